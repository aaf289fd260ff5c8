"""The model file: safe loading, atomic writes, and clear errors for every bad file."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, ModelFileError, load_model, save_model


def tiny_model_file() -> ModelFile:
    model = ModelFile(ModelMeta(encoder="tiny", class_names=["a", "b"]))
    model.set_part("encoder", build_encoder("tiny"))
    return model


def test_round_trip_keeps_weights_and_meta(tmp_path):
    model = tiny_model_file()
    path = save_model(model, tmp_path / "m.nwmodel")
    loaded = load_model(path)
    assert loaded.meta.class_names == ["a", "b"]
    assert loaded.meta.encoder == "tiny"
    encoder = build_encoder("tiny")
    loaded.load_part("encoder", encoder, path)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, model.tensors["encoder." + key])


def test_every_tensor_kind_reads_back_exactly_with_the_safetensors_library(tmp_path):
    # save_model writes the safetensors layout itself (chunk by chunk, to free the GIL):
    # the library's own reader must get every dtype, a 0-d and an empty tensor back bit-exact.
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a.f32": torch.randn(3, 5, generator=gen),
        "a.f64": torch.randn(7, generator=gen, dtype=torch.float64),
        "a.f16": torch.randn(2, 3, generator=gen).half(),
        "a.bf16": torch.randn(4, generator=gen).bfloat16(),
        "a.i64": torch.tensor(12345678901),
        "a.i8": torch.arange(-3, 3, dtype=torch.int8),
        "a.u8": torch.arange(9, dtype=torch.uint8).reshape(3, 3),
        "a.bool": torch.tensor([True, False, True]),
        "a.empty": torch.zeros(0, 4),
        "a.strided": torch.arange(12.0).reshape(3, 4).t(),
    }
    model = ModelFile(ModelMeta(encoder="tiny"), tensors)
    path = save_model(model, tmp_path / "m.nwmodel")
    with safe_open(str(path), framework="pt") as fh:
        assert set(fh.keys()) == set(tensors)
        for name, expected in tensors.items():
            got = fh.get_tensor(name)
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            assert torch.equal(got, expected), name
    assert load_model(path).meta.kind == "encoder"


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


@pytest.mark.parametrize("start", [b"PK", b"\x80\x02", b"\x80\x05"])
def test_a_model_whose_header_length_reads_as_a_pickle_signature_loads(tmp_path, start):
    # A safetensors file starts with its header's length (8 bytes, little-endian); a header of
    # 19280 bytes starts the file with "PK", as a torch.save zip does. A freshly trained
    # segmenter was refused as a pickle file that way. Pad a real header to such a length.
    data = save_model(tiny_model_file(), tmp_path / "m.nwmodel").read_bytes()
    n = int.from_bytes(data[:8], "little")
    target = int.from_bytes(start, "little")
    while target < n:
        target += 65536  # same first two bytes
    padded = target.to_bytes(8, "little") + data[8 : 8 + n] + b" " * (target - n) + data[8 + n :]
    assert padded[:2] == start
    path = tmp_path / "padded.nwmodel"
    path.write_bytes(padded)
    assert load_model(path).meta.class_names == ["a", "b"]


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

    monkeypatch.setattr("napari_nanowire.core.model.modelfile.os.replace", crash)
    model = tiny_model_file()
    model.meta.epoch = 5
    with pytest.raises(OSError):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.nwmodel"]
