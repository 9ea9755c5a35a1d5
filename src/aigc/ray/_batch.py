"""The callable class for ``ray.data.Dataset.map_batches``: one model per actor, one output per row.

Stages of one batch (:meth:`BatchGenerator.__call__`):
    1. per row: its key (the id column), its seed (the row's ``seed`` column, else derived from the key, see
       :mod:`aigc.ray._rows`), its prompt and parameters (the run's, then the row's own columns); a row whose
       output file exists already is skipped (its record must name the same prompt and seed);
    2. generate: one call per row (``deterministic=True``, the default: a row never sees its batch, so the
       output does not depend on how Ray split the work), or one call per group of rows with the same parameters
       (``deterministic=False``: faster on an accelerator, equal to the single runs within the backend's stated
       tolerance);
    3. save each row's output with its provenance (atomic: a file appears whole or not at all), and return the
       batch with the output columns added.

A row that fails with an :class:`~aigc.errors.AigcError` (a bad parameter in that row, a prompt the model does
not know, ...) gets ``status="failed"`` and the message in ``error``; the other rows go on. Any other exception
is a bug or a broken machine, and fails the task as Ray Data's own errors do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aigc
from aigc.errors import AigcError, InvalidRequest, ProvenanceError
from aigc.ray._rows import check_format, check_key, explicit_seed, file_name, row_seed

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["OUTPUT_COLUMNS", "BatchGenerator", "BatchSettings", "check_settings"]

logger = logging.getLogger("aigc.ray")

_MODALITIES = ("text", "image", "audio", "video")
_REQUEST_TYPES: dict[str, type[aigc.Request]] = {"text": aigc.TextRequest, "image": aigc.ImageRequest,
                                                 "audio": aigc.AudioRequest, "video": aigc.VideoRequest}
# Request fields that are not per-row parameters: the prompt and the seed have columns of their own; a row makes
# one sample, so num_outputs has no place in a row; deterministic is a setting of the run.
_NOT_PARAMS = frozenset({"prompt", "seed", "num_outputs", "deterministic"})
#: The columns a batch gains (``<modality>`` holds a media file's bytes, with ``include_data``).
OUTPUT_COLUMNS = ("seed", "text", "path", "record", "status", "error")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """A run's settings, checked (see :class:`BatchGenerator` for each)."""

    modality: aigc.Modality
    seed: int
    params: Mapping[str, Any]
    id_column: str
    output: Path | None
    format: str
    include_data: bool
    deterministic: bool


def check_settings(modality: str, *, seed: int, params: Mapping[str, Any] | None = None, id_column: str = "id",
                   output: str | os.PathLike[str] | None = None, format: str | None = None,
                   include_data: bool = True, deterministic: bool = True) -> BatchSettings:
    """Check a run's settings before anything starts (no Ray, no model).

    Raises:
        InvalidRequest: naming the first bad setting and its fix.
    """
    if modality not in _MODALITIES:
        raise InvalidRequest("modality", modality, "unknown modality", f"use one of {', '.join(_MODALITIES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise InvalidRequest("seed", seed, "the run's seed must be an integer in [0, 2**63 - 1]", "pass seed=0")
    params = dict(params or {})
    rtype = _REQUEST_TYPES[modality]
    for name in params:
        if name in _NOT_PARAMS:
            raise InvalidRequest(name, params[name], "not a parameter of a batch run" + (
                ": one row makes one sample" if name == "num_outputs" else ""),
                "pass seed= to the run, give rows their own 'seed' column, or repeat a row under another id"
                if name != "deterministic" else "pass deterministic= to the run")
    rtype.check_param_names(params)
    rtype.from_params("-", **params)  # the values, checked like any request's (a row's own are checked per row)
    if not isinstance(id_column, str) or not id_column:
        raise InvalidRequest("id_column", id_column, "must be a column name", "pass id_column='id'")
    for name, flag in (("include_data", include_data), ("deterministic", deterministic)):
        if not isinstance(flag, bool):
            raise InvalidRequest(name, flag, "must be True or False", f"pass {name}=True")
    folder = None
    if output is not None:
        folder = Path(os.fspath(output)).expanduser()
        if folder.exists() and not folder.is_dir():
            raise InvalidRequest("output", os.fspath(output), "is a file; the outputs go into a folder",
                                 "pass a folder (it is created if missing)")
        folder = folder.resolve()
    return BatchSettings(modality=cast("aigc.Modality", modality), seed=seed, params=params, id_column=id_column,
                         output=folder, format=check_format(modality, format), include_data=include_data,
                         deterministic=deterministic)


@dataclasses.dataclass
class _Row:
    """One row on its way through a batch."""

    key: int | str | None = None
    seed: int | None = None
    prompt: Any = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    target: Path | None = None
    status: str | None = None  # "generated", "skipped", "failed"; None while pending
    text: str | None = None
    data: bytes | None = None
    path: str | None = None
    record: str | None = None
    error: str | None = None

    def fail(self, error: AigcError) -> None:
        self.status, self.error = "failed", f"{type(error).__name__}: {error}"


class BatchGenerator:
    """Generate one output per row of a Ray Data batch; for ``map_batches`` with an actor pool.

    Each actor loads the model once, through :func:`aigc.load` and its cache. A batch needs a ``prompt`` column
    and a key column (``id_column``: integers >= 0 or strings, unique); it may have a ``seed`` column (a row's
    own seed) and columns named after request fields (``steps``, ``guidance``, ``max_new_tokens``, ...: that
    row's parameters; empty values keep the run's). Other columns are carried through.

    Columns added (replaced if there): ``seed`` (the seed used), ``text`` (text: the generated text), the
    modality's name (image/audio/video: the file's bytes in ``format``, provenance embedded; with
    ``include_data``), ``path`` (the file written, with ``output``), ``record`` (the provenance record as
    JSON), ``status`` (``"generated"``, ``"skipped"``: the output was there already, or ``"failed"``) and
    ``error`` (why a row failed).

    Args:
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        seed: the run's seed; a row's seed is ``seed + key`` for an integer key (its index in the input file, for
            :func:`aigc.ray.generate`), or a hash of the seed and a string key.
        model, backend, device, dtype, allow_pickle, trust_remote_code: as in :func:`aigc.load`.
        options: backend load options (``aigc.load``'s keywords), e.g. ``{"adapter": "lora-dir"}``.
        params: request parameters for every row (``{"steps": 20}``).
        id_column: the key column.
        output: a folder to write ``<key>.<format>`` into, one file per row; rows whose file exists are skipped.
        format: the file format (suffix): text ``json`` (default) or ``txt``; image ``png`` (default), ``webp``,
            ``jpg``; audio ``wav`` (default), ``flac``, ``ogg``; video ``mp4`` (default), ``gif``, ``webp``.
        include_data: add the media bytes column (for images, audio and video).
        deterministic: one model call per row (the default; outputs independent of batching), or batched calls
            per group of rows with equal parameters (faster on accelerators; equal within tolerance).
        threads: torch CPU threads in this actor (default: Ray's, one per CPU the actor holds).

    Raises:
        InvalidRequest: a bad setting, before the model loads.

    Example:
        >>> ds = ray.data.read_parquet("captions.parquet")  # has "id" and "prompt" columns  # doctest: +SKIP
        >>> out = ds.map_batches(aigc.ray.BatchGenerator, fn_constructor_args=("image",),  # doctest: +SKIP
        ...                      fn_constructor_kwargs={"seed": 0, "output": "out/"}, batch_format="pyarrow",
        ...                      concurrency=2, num_gpus=0.5, batch_size=16)
    """

    def __init__(self, modality: str, *, seed: int, model: str | os.PathLike[str] | None = None,
                 backend: str | None = None, device: str = "auto", dtype: str = "auto",
                 options: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 id_column: str = "id", output: str | os.PathLike[str] | None = None, format: str | None = None,
                 include_data: bool = True, deterministic: bool = True, allow_pickle: bool = False,
                 trust_remote_code: bool = False, threads: int | None = None) -> None:
        self.settings = check_settings(modality, seed=seed, params=params, id_column=id_column, output=output,
                                       format=format, include_data=include_data, deterministic=deterministic)
        if threads is not None:
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise InvalidRequest("threads", threads, "must be an integer >= 1", "pass threads=1")
            import torch

            torch.set_num_threads(threads)
        if self.settings.output is not None:
            self.settings.output.mkdir(parents=True, exist_ok=True)
        self.generator: aigc.Generator[Any, Any] = aigc.load(
            self.settings.modality, model, backend=backend, device=device, dtype=dtype, allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code, **dict(options or {}))
        self._fields = frozenset(_REQUEST_TYPES[modality].field_names()) - _NOT_PARAMS
        logger.info("aigc.ray: %r loaded in process %d", self.generator, os.getpid())

    # -- the batch ----------------------------------------------------------------------------------
    def __call__(self, batch: Any) -> pa.Table:
        """Generate the batch's rows; return the batch with the output columns (a ``pyarrow.Table``)."""
        table = _to_arrow(batch)
        s = self.settings
        for name in ("prompt", s.id_column):
            if name not in table.column_names:
                raise InvalidRequest(name, None, f"the batch has no {name!r} column (it has {table.column_names})",
                                     _KEY_FIX if name == s.id_column else "name the prompt column 'prompt'")
        for name in ("num_outputs", "deterministic"):
            if name in table.column_names:
                raise InvalidRequest(name, None, "a row makes one sample, with the run's deterministic setting",
                                     f"drop the {name!r} column")
        param_columns = [c for c in table.column_names if c in self._fields]
        rows = [self._prepare(row, param_columns) for row in table.to_pylist()]
        pending = [r for r in rows if r.status is None]
        if s.deterministic:
            for row in pending:
                self._run_one(row)
        else:
            groups: dict[str, list[_Row]] = {}
            for row in pending:
                groups.setdefault(json.dumps(row.params, sort_keys=True, default=repr), []).append(row)
            for group in groups.values():
                self._run_group(group)
        return self._output(table, rows)

    def _prepare(self, values: dict[str, Any], param_columns: list[str]) -> _Row:
        s = self.settings
        row = _Row()
        try:
            row.key = check_key(values[s.id_column], s.id_column)
            own = explicit_seed(values.get("seed"))
            row.seed = own if own is not None else row_seed(s.seed, row.key)
            row.prompt = values["prompt"]
            if row.prompt is None:
                raise InvalidRequest("prompt", None, "the row has no prompt", "fill in the row's prompt")
            row.params = {**s.params, **{c: values[c] for c in param_columns if values[c] is not None}}
            if s.output is not None:
                row.target = s.output / file_name(row.key, s.format, s.id_column)
                if row.target.exists():
                    self._existing(row)
        except AigcError as e:
            row.fail(e)
        return row

    def _existing(self, row: _Row) -> None:
        """Take the output already in the folder, if its record says it is this row's."""
        assert row.target is not None
        try:
            record = aigc.Record.from_file(row.target)
        except ProvenanceError as e:
            raise InvalidRequest("output", str(row.target), f"the file exists but holds no aigc record ({e})",
                                 "delete it, or write to another output folder") from None
        if record.seeds != [row.seed] or record.request.get("prompt") != row.prompt:
            raise InvalidRequest("output", str(row.target), "the file exists but was made from another row "
                                 f"(prompt {record.request.get('prompt')!r}, seed {record.seeds}; this row: "
                                 f"{row.prompt!r}, seed {row.seed})", "delete it, or write to another output folder")
        row.status, row.path, row.record = "skipped", str(row.target), record.to_json()
        if self.settings.modality == "text":
            row.text = _saved_text(row.target)
        elif self.settings.include_data:
            row.data = row.target.read_bytes()

    def _run_one(self, row: _Row) -> None:
        try:
            result = self.generator.generate(row.prompt, seed=row.seed, progress=False, **row.params)
            self._finish(row, result)
        except AigcError as e:
            row.fail(e)

    def _run_group(self, rows: list[_Row]) -> None:
        """One call for rows with the same parameters; on a failure, each row alone (to find the bad one)."""
        if len(rows) == 1:
            self._run_one(rows[0])
            return
        try:
            result = self.generator.generate([r.prompt for r in rows], seed=[r.seed for r in rows],
                                             progress=False, **rows[0].params)
        except AigcError:
            for row in rows:
                self._run_one(row)
            return
        for i, row in enumerate(rows):
            try:
                self._finish(row, _sample(result, i, row.prompt, len(rows)))
            except AigcError as e:
                row.fail(e)

    def _finish(self, row: _Row, result: aigc.Result) -> None:
        s = self.settings
        assert result.record is not None
        row.record = result.record.to_json()
        if isinstance(result, aigc.TextResult):
            row.text = result.texts[0]
        if row.target is not None:
            paths = result.save(row.target)
            row.path = str(paths[0])
            if s.include_data and s.modality != "text":
                row.data = paths[0].read_bytes()
        elif s.include_data and s.modality != "text":
            with tempfile.TemporaryDirectory(prefix="aigc-ray-") as tmp:
                row.data = result.save(Path(tmp) / f"out.{s.format}")[0].read_bytes()
        row.status = "generated"

    def _output(self, table: pa.Table, rows: list[_Row]) -> pa.Table:
        import pyarrow as pa

        s = self.settings
        columns: list[tuple[str, pa.Array]] = [("seed", pa.array([r.seed for r in rows], pa.int64()))]
        if s.modality == "text":
            columns.append(("text", pa.array([r.text for r in rows], pa.string())))
        elif s.include_data:
            columns.append((s.modality, pa.array([r.data for r in rows], pa.binary())))
        columns += [(name, pa.array([getattr(r, name) for r in rows], pa.string()))
                    for name in ("path", "record", "status", "error")]
        for name, array in columns:
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, array)
            else:
                table = table.append_column(name, array)
        return table


_KEY_FIX = ("give every row a unique key (e.g. ds.add_column), or use aigc.ray.generate on a file, which numbers the "
            "rows by their index in it; a seed never comes from a row's place in a batch, which Ray does not keep "
            "(ray-project/ray#50890)")


def _to_arrow(batch: Any) -> pa.Table:
    """A batch in any of Ray Data's formats (``pyarrow``, ``pandas``, ``numpy`` dicts) as a ``pyarrow.Table``."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, Mapping):
        return pa.table({name: pa.array(values.tolist() if hasattr(values, "tolist") else list(values))
                         for name, values in batch.items()})
    if type(batch).__name__ == "DataFrame":
        return pa.Table.from_pandas(batch, preserve_index=False)
    raise InvalidRequest("batch", type(batch).__name__, "not a Ray Data batch",
                         "call map_batches with batch_format='pyarrow'")


def _saved_text(path: Path) -> str:
    if path.suffix == ".json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        return str(doc["text"])
    return path.read_text(encoding="utf-8")


def _sample(result: aigc.Result, i: int, prompt: Any, count: int) -> aigc.Result:
    """Sample ``i`` of a batched result, as a result of its own whose record is the single run's."""
    record = result.record
    assert record is not None
    seed = result.seeds[i]
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name == "prompt_index":
            changes[f.name] = [0] if value else value
        elif f.name != "record" and isinstance(value, list) and len(value) == count:
            changes[f.name] = [value[i]]
    changes["record"] = dataclasses.replace(record, request={**record.request, "prompt": prompt, "seed": seed},
                                            seeds=[seed], duration_s=round(record.duration_s / count, 6))
    return dataclasses.replace(result, **changes)
