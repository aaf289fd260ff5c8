"""The model file: safe loading, atomic writes, and clear errors for every bad file."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from napari_nanowire.core.encoders import build_encoder
from napari_nanowire.core.modelfile import ModelFile, ModelFileError, load_model, save_model


def tiny_model_file() -> ModelFile:
    model = ModelFile(meta={"kind": "encoder", "encoder": "tiny", "class_names": ["a", "b"]})
    model.set_part("encoder", build_encoder("tiny"))
    return model


def test_round_trip_keeps_weights_and_meta(tmp_path):
    model = tiny_model_file()
    path = save_model(model, tmp_path / "m.nwmodel")
    loaded = load_model(path)
    assert loaded.meta["class_names"] == ["a", "b"]
    assert loaded.meta["encoder"] == "tiny"
    encoder = build_encoder("tiny")
    loaded.load_part("encoder", encoder, path)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, model.tensors["encoder." + key])


def test_pickle_file_is_refused_without_running_it(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open(r'%s', 'w').write('ran')" % (tmp_path / "pwned"),))

    path = tmp_path / "evil.nwmodel"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(path)
    torch_path = tmp_path / "evil.pt"
    torch.save({"x": Boom()}, torch_path)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(torch_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("cut", [0, 5, 100, -100])
def test_empty_or_truncated_file_is_named(tmp_path, cut):
    path = save_model(tiny_model_file(), tmp_path / "m.nwmodel")
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match=r"m\.nwmodel.*(empty|truncated or corrupt)"):
        load_model(path)


def test_foreign_safetensors_and_missing_file(tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ModelFileError, match="not a napari-nanowire model"):
        load_model(foreign)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.nwmodel")


def test_weights_for_another_architecture_give_clear_error(tmp_path):
    path = save_model(tiny_model_file(), tmp_path / "m.nwmodel")
    with pytest.raises(ModelFileError, match="do not fit this architecture"):
        load_model(path).load_part("encoder", build_encoder("resnet18"), path)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_model(tiny_model_file(), tmp_path / "m.nwmodel")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("napari_nanowire.core.modelfile.os.replace", crash)
    model = tiny_model_file()
    model.meta["epoch"] = 5
    with pytest.raises(OSError):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.nwmodel"]
