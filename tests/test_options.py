"""Typed backend load options: declared once per backend, built and checked by aigc.load before any file is read."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import aigc
from aigc._registry import _registry
from aigc.errors import InvalidRequest


def _builtin_classes() -> list[type[aigc.Generator[Any, Any]]]:
    return [_registry.get(info.modality, info.name) for info in aigc.backends() if info.builtin]


def test_every_builtin_backend_declares_typed_options() -> None:
    classes = _builtin_classes()
    assert len(classes) >= 11
    for cls in classes:
        kind = cls.options_type
        assert kind is not None and issubclass(kind, aigc.BackendOptions), cls
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert cls.load_options == kind.names(), cls
        assert cls.unsafe_load_options <= cls.load_options | {"max_batch_size"}, cls
        kind()  # the defaults pass their own checks


@pytest.mark.parametrize(("options", "field", "message"), [
    ({"max_batch_sise": 2}, "max_batch_sise", "did you mean 'max_batch_size'"),
    ({"devise": "cpu"}, "devise", "did you mean 'device'"),
    ({"max_batch_size": 0}, "max_batch_size", "integer >= 1"),
    ({"max_batch_size": True}, "max_batch_size", "integer >= 1"),
    ({"merge_adapter": True}, "merge_adapter", "no adapter to merge"),
    ({"compile": "fastest"}, "compile", "torch.compile backend"),
])
def test_text_options_are_checked_before_loading(options: dict[str, Any], field: str, message: str,
                                                 tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"  # nothing to load: the options fail first
    empty.mkdir()
    with pytest.raises(InvalidRequest, match=message) as info:
        aigc.load("text", empty, backend="transformers", **options)
    assert info.value.field == field


def test_options_of_the_own_format_backends(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="upscaling filter") as info:
        aigc.load("image", "default", backend="gan", upscale="cubic")
    assert info.value.field == "upscale"
    with pytest.raises(InvalidRequest, match="did you mean 'upscale'"):
        aigc.load("video", "default", upscal="nearest")
    gen = aigc.load("video", "default", max_batch_size=3, upscale="nearest", cache=False)
    assert (gen.max_batch_size, gen.upscale) == (3, "nearest")  # type: ignore[attr-defined]
    assert aigc.load("audio", "default", cache=False).max_batch_size == 32  # type: ignore[attr-defined]


def test_a_plugin_declares_its_options_as_a_dataclass() -> None:
    from aigc.testing.fake import FakeTextGenerator

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class BeamOptions(aigc.BackendOptions):
        beam_width: int = 4

        def check(self) -> None:
            if not isinstance(self.beam_width, int) or self.beam_width < 1:
                raise InvalidRequest("beam_width", self.beam_width, "must be an int >= 1", "pass beam_width=4")

    seen: list[int] = []

    class Beam(FakeTextGenerator):
        backend_name = "beam_options_test"
        options_type = BeamOptions

        @classmethod
        def load(cls, model: str, *, options: aigc.LoadOptions) -> Any:
            seen.append(BeamOptions.of(options).beam_width)
            return super().load(model, options=options)

    assert Beam.load_options == {"beam_width"}
    aigc.register_backend(Beam)
    try:
        aigc.load("text", "anything", backend="beam_options_test", beam_width=8, cache=False)
        assert seen == [8]
        with pytest.raises(InvalidRequest, match="did you mean 'beam_width'"):
            aigc.load("text", "anything", backend="beam_options_test", beam_widht=8)
        with pytest.raises(InvalidRequest, match="int >= 1"):
            aigc.load("text", "anything", backend="beam_options_test", beam_width=0)
        assert seen == [8]  # refused before the backend's load ran
    finally:
        _registry.unregister("text", "beam_options_test")
