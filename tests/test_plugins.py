"""Backends through entry points: built-ins, the example third-party plugin, and broken plugins."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aigc
from aigc._registry import _registry
from aigc.errors import BackendNotFound, PluginError
from aigc.testing import FakeTextGenerator, check_generator, registered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"


def _install_dist(site: Path, name: str, entry_points: dict[str, str], version: str = "0.1.0") -> None:
    """Write the metadata pip would write: ``<name>-<version>.dist-info`` with an entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[aigc.backends]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path that plugins are 'installed' into; the registry is rescanned around it."""
    path = tmp_path / "site"
    path.mkdir()
    sys.path.insert(0, str(path))
    _registry.scan()
    try:
        yield path
    finally:
        sys.path.remove(str(path))
        for mod in [m for m in sys.modules if m.startswith(("aigc_markov", "broken_plugin", "crashing_plugin"))]:
            del sys.modules[mod]
        import importlib

        importlib.invalidate_caches()
        _registry.scan()


@pytest.fixture
def markov(site: Path) -> Path:
    """The example plugin installed from its own pyproject.toml."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    shutil.copytree(PLUGIN / "src" / "aigc_markov", site / "aigc_markov")
    _install_dist(site, project["project"]["name"], project["project"]["entry-points"]["aigc.backends"],
                  project["project"]["version"])
    _registry.scan()
    return site


def test_builtin_backends_are_declared_as_entry_points() -> None:
    infos = {(b.modality, b.name): b for b in aigc.backends()}
    text = infos[("text", "transformers")]
    assert text.source == "aigc" and text.builtin
    assert text.target == "aigc._backends.text_transformers:TransformersTextGenerator"
    assert [b.modality for b in aigc.backends("text")] == ["text"] * len(aigc.backends("text"))


def test_backends_lists_without_importing(site: Path) -> None:
    _install_dist(site, "lazy-plugin", {"text.lazy": "lazy_plugin_module:Gen"})
    _registry.scan()
    info = next(b for b in aigc.backends("text") if b.name == "lazy")
    assert info.status == "available"
    assert "lazy_plugin_module" not in sys.modules


def test_example_plugin_is_discovered_loaded_and_passes_the_contract(markov: Path, tmp_path: Path) -> None:
    info = next(b for b in aigc.backends("text") if b.name == "markov")
    assert (info.source, info.status) == ("aigc-markov", "available")

    import aigc_markov  # type: ignore[import-not-found]

    model = aigc_markov.train(["to be or not to be, that is the question. " * 3,
                               "the quick brown fox jumps over the lazy dog. " * 3], tmp_path / "markov", order=3)
    gen = aigc.load("text", model)  # backend inferred through the plugin's detect()
    assert gen.info.backend == "markov"
    assert aigc.load("text", model, backend="markov") is gen  # the same cached instance
    res = gen.generate("to be", seed=3, num_outputs=2, max_new_tokens=40, stop=["."])
    assert all(set(t) <= set(gen.vocab) for t in res.texts)  # type: ignore[attr-defined]
    assert "".join(gen.stream("to be", seed=3, max_new_tokens=40, stop=["."])) == res.texts[0]
    done = check_generator(gen, prompt="the ", max_new_tokens=20, temperature=0.8, top_k=5)
    assert "batch == single" in done and "save/load" in done


def test_a_plugin_that_fails_to_import_names_itself_and_breaks_nothing(site: Path, gpt2_dir: Path) -> None:
    _install_dist(site, "broken-plugin", {"text.broken": "broken_plugin:Generator"})
    (site / "crashing_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    _install_dist(site, "crashing-plugin", {"text.crashing": "crashing_plugin:Gen"})
    _registry.scan()
    with pytest.raises(PluginError, match=r"text\.broken \(broken-plugin\).*broken_plugin") as e:
        aigc.load("text", gpt2_dir, backend="broken")
    assert e.value.plugin.startswith("text.broken")
    with pytest.raises(PluginError, match="RuntimeError: boom at import"):
        aigc.load("text", gpt2_dir, backend="crashing")
    statuses = {b.name: b.status for b in aigc.backends("text")}
    assert statuses["broken"] == "error" and statuses["transformers"] != "error"
    # backend inference skips the broken plugins, and the built-in backend still works
    assert aigc.load("text", gpt2_dir, device="cpu").info.backend == "transformers"


def test_two_plugins_claiming_one_name_raise_when_used(site: Path) -> None:
    (site / "dup_a.py").write_text("")
    _install_dist(site, "plugin-a", {"text.dup": "dup_a:Gen"})
    _install_dist(site, "plugin-b", {"text.dup": "dup_b:Gen"})
    _registry.scan()
    with pytest.raises(PluginError, match="declared twice"):
        aigc.load("text", "anything", backend="dup")


def test_a_plugin_cannot_shadow_a_builtin(site: Path) -> None:
    _install_dist(site, "evil-plugin", {"text.transformers": "evil:Gen"})
    _registry.scan()
    info = next(b for b in aigc.backends("text") if b.name == "transformers")
    assert info.source == "aigc"


def test_badly_named_entry_point_is_reported(site: Path) -> None:
    _install_dist(site, "odd-plugin", {"nodot": "odd:Gen", "sound.thing": "odd:Gen"})
    _registry.scan()
    errors = {b.name: b.error for b in aigc.backends() if b.status == "error"}
    assert any("modality" in (msg or "") for msg in errors.values())


def test_entry_point_must_match_the_class(site: Path) -> None:
    (site / "mismatch_plugin.py").write_text(
        "from aigc.testing import FakeTextGenerator\n"
        "class Gen(FakeTextGenerator):\n    backend_name = 'other'\n")
    _install_dist(site, "mismatch", {"text.mismatch": "mismatch_plugin:Gen"})
    _registry.scan()
    with pytest.raises(PluginError, match=r"entry point is named text\.mismatch"):
        aigc.load("text", "x", backend="mismatch")
    sys.modules.pop("mismatch_plugin", None)


def test_register_backend_at_runtime_and_duplicates_raise() -> None:
    with registered(FakeTextGenerator):
        assert any(b.name == "fake" and b.source == "runtime" for b in aigc.backends("text"))
        with pytest.raises(PluginError, match="already registered"):
            aigc.register_backend(FakeTextGenerator)
        res = aigc.generate("text", "hi", model="whatever", backend="fake", seed=5, max_new_tokens=4)
        assert len(res.text.split()) == 4
    assert not any(b.name == "fake" for b in aigc.backends("text"))


def test_register_backend_rejects_non_generators() -> None:
    with pytest.raises(PluginError, match=r"subclass of aigc\.Generator"):
        aigc.register_backend(int)  # type: ignore[arg-type]

    class NoName(FakeTextGenerator):
        backend_name = "has space"

    with pytest.raises(PluginError, match="identifier"):
        aigc.register_backend(NoName)


def test_unknown_backend_lists_the_known_ones(gpt2_dir: Path) -> None:
    with pytest.raises(BackendNotFound, match="transformers"):
        aigc.load("text", gpt2_dir, backend="nope")


def test_a_plugin_installed_after_the_first_scan_is_found(site: Path) -> None:
    aigc.backends()  # scanned
    (site / "late_plugin.py").write_text(
        "from aigc.testing import FakeTextGenerator\n"
        "class Gen(FakeTextGenerator):\n    backend_name = 'late'\n")
    _install_dist(site, "late-plugin", {"text.late": "late_plugin:Gen"})
    # no explicit rescan: a miss triggers one (like `%pip install` in a running notebook)
    assert aigc.load("text", "x", backend="late").info.backend == "late"
    sys.modules.pop("late_plugin", None)
