#!/usr/bin/env python3
"""Writes the synthetic test file UserBehavior.synthetic.csv beside this script.

The file has the format of the Alibaba Tianchi "User Behavior Data from Taobao for
Recommendation" CSV (no header; user_id,item_id,category_id,behavior_type,timestamp with
behavior_type pv, fav, cart or buy and the timestamp in unix seconds) but none of its
content: every id, time and behaviour is drawn here from a seeded generator. It exists so
that the training tests run the Taobao path of the pipeline (`liveprofile import taobao`,
then `liveprofile features build --cutoff 2017-12-02T00:00:00+08:00 --label-window 2d`)
on a fresh clone, without the real data set.

Shape of the data, chosen to exercise that path:

* 150 users active from 25 November 2017 (China time), 6 more whose first event comes
  after the cut-off (no row in the feature table);
* events from 25 November to 3 December 2017 (China time), the newest within two minutes
  of the end of the 2-day label window, plus two stray rows outside that range (one the
  evening before, one the morning after), as the real file has a few;
* sessions of item views in a user's favourite categories, with favourites, carts and
  orders; each user has a latent activity level and purchase propensity, so past orders
  carry some signal about buying on 2-3 December (45 of the 150 users with history do).

5,501 rows in all.

Only arithmetic on ``random.Random.random()`` is used (its sequence for a seed is the one
part of the random module that Python keeps stable across versions), so every Python 3
writes the same bytes. ``training/tests/test_data.py`` checks the shipped file against a
fresh run of this script.

    python3 training/datasets/taobao-synthetic/generate.py [OUT]   # OUT defaults to the shipped file
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

SEED = 20171202
USERS = 150
LATE_USERS = 6
DAY = 86_400
START = 1_511_539_200  # 2017-11-25 00:00 +08:00
CUTOFF = 1_512_144_000  # 2017-12-02 00:00 +08:00 (the feature cut-off)
END = 1_512_316_800  # 2017-12-04 00:00 +08:00 (end of the 2-day label window)
DAYS = (END - START) // DAY  # 9
CATEGORIES = 30
ITEMS_PER_CATEGORY = 40
# Relative weight of each China-time hour of day for the start of a session.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 6, 5, 5, 5, 5, 6, 8, 10, 11, 9, 5)

OUT = Path(__file__).resolve().parent / "UserBehavior.synthetic.csv"


class Draw:
    """Draws built from ``random()`` and arithmetic only (bit-stable across Pythons)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def uniform(self) -> float:
        return self._r.random()

    def below(self, n: int) -> int:
        return min(int(self._r.random() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def weighted(self, weights) -> int:
        x = self._r.random() * sum(weights)
        for i, w in enumerate(weights):
            x -= w
            if x < 0:
                return i
        return len(weights) - 1


def catalogue(d: Draw) -> list[tuple[int, list[int]]]:
    """Category ids, each with its item ids (ids in the ranges of the real file's format)."""
    used: set[int] = set()

    def fresh(lo: int, hi: int) -> int:
        while True:
            v = d.between(lo, hi)
            if v not in used:
                used.add(v)
                return v

    return [(fresh(1_000, 5_160_000), [fresh(1, 5_160_000) for _ in range(ITEMS_PER_CATEGORY)]) for _ in range(CATEGORIES)]


def user_rows(d: Draw, user: int, cats, first_day: int) -> list[tuple[int, int, int, str, int]]:
    activity = 0.2 + 1.1 * d.uniform() ** 2  # expected sessions per day
    propensity = 0.06 + 0.7 * d.uniform() ** 2  # chance that a cart ends in an order
    favourites = [d.below(CATEGORIES) for _ in range(d.between(1, 4))]
    first_session = d.between(first_day, DAYS - 1 if first_day else (CUTOFF - START) // DAY - 1)
    rows = []
    for day in range(first_day, DAYS):
        # sessions that day: four draws of a quarter of the expected count (binomial);
        # every user has a session on one day drawn before the cut-off (late users: after)
        sessions = sum(d.chance(activity / 4) for _ in range(4))
        for _ in range(max(sessions, int(day == first_session))):
            t = START + day * DAY + d.weighted(HOUR_WEIGHTS) * 3_600 + d.below(3_600)
            viewed = []
            while True:
                cat_id, items = cats[favourites[d.below(len(favourites))] if d.chance(0.85) else d.below(CATEGORIES)]
                item = items[d.below(len(items)) if d.chance(0.7) else d.below(8)]  # a few popular items
                rows.append((user, item, cat_id, "pv", t))
                viewed.append((item, cat_id))
                if d.chance(0.05):
                    t += d.between(2, 40)
                    rows.append((user, item, cat_id, "fav", t))
                if d.chance(0.08):
                    t += d.between(2, 60)
                    rows.append((user, item, cat_id, "cart", t))
                    if d.chance(propensity * 1.5):
                        t += d.between(10, 600)
                        rows.append((user, item, cat_id, "buy", t))
                elif d.chance(propensity * 0.2):
                    t += d.between(10, 300)
                    rows.append((user, item, cat_id, "buy", t))
                if not d.chance(0.8):
                    break
                t += d.between(5, 240)
            if d.chance(0.15):  # back later to buy something seen in this session
                item, cat_id = viewed[d.below(len(viewed))]
                t += d.between(600, 30_000)
                rows.append((user, item, cat_id, "buy" if d.chance(propensity * 2) else "cart", t))
    return rows


def generate() -> list[tuple[int, int, int, str, int]]:
    d = Draw(SEED)
    cats = catalogue(d)
    ids: set[int] = set()
    rows = []
    for n in range(USERS + LATE_USERS):
        user = d.between(1, 1_000_000)
        while user in ids:
            user = d.between(1, 1_000_000)
        ids.add(user)
        first_day = (CUTOFF - START) // DAY if n >= USERS else 0
        mine = [r for r in user_rows(d, user, cats, first_day) if r[4] < END]
        if n == 0:  # stray rows outside 25 Nov - 3 Dec, as in the real file
            cat_id, items = cats[0]
            mine += [(user, items[0], cat_id, "pv", START - 3 * 3_600 + 17), (user, items[1], cat_id, "pv", END + 2 * 3_600 + 5)]
        if n == 1:  # data reaches the end of the label window
            cat_id, items = cats[1]
            mine.append((user, items[2], cat_id, "pv", END - 95))
        mine.sort(key=lambda r: r[4])  # each user's rows in time order (ties in drawing order)
        rows += mine
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    rows = generate()
    text = "".join(f"{u},{i},{c},{b},{t}\n" for u, i, c, b, t in rows)
    out.write_text(text, encoding="ascii", newline="\n")
    print(f"{out}: {len(rows)} rows, {len({r[0] for r in rows})} users", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
