"""The unmodified Triton Python client (KServe v2 over gRPC) against `liveprofile serve`."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import MODELS, golden

BUNDLED = sorted(p.name for p in MODELS.iterdir() if (p / "1" / "manifest.json").exists())


def test_the_five_bundled_models_are_found():
    assert BUNDLED == ["conversion", "taobao_purchase", "uci_session_conversion", "user_segments", "user_tags"]


def test_live_ready_and_server_metadata(server):
    client = grpcclient.InferenceServerClient(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "liveprofile"


@pytest.mark.parametrize("model", BUNDLED)
def test_model_metadata_matches_the_manifest(server, model):
    client = grpcclient.InferenceServerClient(server)
    manifest, _ = golden(model)
    assert client.is_model_ready(model)
    assert client.is_model_ready(model, "1")
    meta = client.get_model_metadata(model)
    assert meta.name == model
    assert list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        (i["name"], "FP32", i["shape"]) for i in manifest["inputs"]
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        (o["name"], "FP32", o["shape"]) for o in manifest["outputs"]
    ]


@pytest.mark.parametrize("model", BUNDLED)
def test_infer_equals_the_golden_outputs(server, model):
    client = grpcclient.InferenceServerClient(server)
    manifest, examples = golden(model)
    name = manifest["inputs"][0]["name"]
    rows = np.asarray(examples["inputs"][name], dtype=np.float32)
    x = grpcclient.InferInput(name, list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)
    outputs = [grpcclient.InferRequestedOutput(o["name"]) for o in manifest["outputs"]]
    result = client.infer(model, [x], outputs=outputs, request_id="golden")
    response = result.get_response()
    assert response.model_name == model and response.model_version == "1" and response.id == "golden"
    tolerance = manifest["golden"].get("tolerance", 1e-5)
    for o in manifest["outputs"]:
        got = result.as_numpy(o["name"])
        want = np.asarray(examples["outputs"][o["name"]], dtype=np.float32)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)


def test_a_specific_version_and_errors_with_their_codes(server):
    client = grpcclient.InferenceServerClient(server)
    manifest, examples = golden("conversion")
    rows = np.asarray(examples["inputs"]["features"], dtype=np.float32)
    x = grpcclient.InferInput("features", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)
    assert client.infer("conversion", [x], model_version="1").as_numpy("probability").shape == (len(rows), 1)
    with pytest.raises(InferenceServerException) as e:
        client.infer("conversion", [x], model_version="3")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", [x])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    narrow = grpcclient.InferInput("features", [len(rows), 5], "FP32")
    narrow.set_data_from_numpy(rows[:, :5].copy())
    with pytest.raises(InferenceServerException) as e:
        client.infer("conversion", [narrow])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "the model takes [rows, 222]" in e.value.message()
    bad = rows.copy()
    bad[0, 0] = np.nan
    x.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as e:
        client.infer("conversion", [x])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "is not finite" in e.value.message()


def test_triton_only_calls_are_unimplemented(server):
    client = grpcclient.InferenceServerClient(server)
    with pytest.raises(InferenceServerException) as e:
        client.get_model_repository_index()
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("user_tags")
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
