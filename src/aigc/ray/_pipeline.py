"""``aigc.ray.generate``: a dataset (or a JSONL/Parquet/CSV file, or a list of prompts) in, one output per row out.

Stages:
    1. check every setting and read the input -- before Ray starts or a model loads: a file is read on the driver
       and each row gets its index in the file as its key (column ``id``) unless it has an id column of its own;
       keys must be unique;
    2. split the rows into blocks and map them through :class:`~aigc.ray.BatchGenerator` on an actor pool
       (``concurrency`` actors, ``num_gpus`` each, ``batch_size`` rows per call);
    3. run it to the end (``materialize``): every file is written when this returns, and the dataset of results
       (one row per input row, in no particular order) is held in Ray's object store.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import BackendUnavailable, InvalidRequest
from aigc.ray._batch import BatchGenerator, check_settings

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

__all__ = ["generate", "read_rows"]

_READERS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".parquet": "parquet", ".pq": "parquet",
            ".csv": "csv"}


def generate(
    data: ray.data.Dataset | str | os.PathLike[str] | Sequence[str] | Sequence[Mapping[str, Any]],
    modality: str,
    *,
    seed: int,
    model: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    format: str | None = None,
    id_column: str | None = None,
    backend: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    options: Mapping[str, Any] | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = 16,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    num_blocks: int | None = None,
    deterministic: bool = True,
    include_data: bool | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    threads: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
    address: str | None = None,
    **params: Any,
) -> ray.data.Dataset:
    """Generate one output per row of a dataset on a Ray cluster (or this machine); write one file per row.

    A row's seed comes from its key, never from where Ray put it: ``seed + key`` for an integer key (a file's
    rows are keyed by their index in it), a hash of ``seed`` and the key for a string key, or the row's own
    ``seed`` column. So the outputs do not depend on blocks, batch sizes, the number of actors or their order,
    and row ``k`` of a file is what ``aigc.generate(prompt_k, seed=seed + k)`` makes in-process.

    Args:
        data: a ``ray.data.Dataset`` (with a key column), a ``.jsonl``/``.parquet``/``.csv`` file, a list of
            prompts or a list of row dicts. Rows need a ``prompt``; they may have ``id``, ``seed`` and request
            fields as columns (a row's own parameters).
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        seed: the run's seed (required: a batch run is meant to be repeatable).
        model, backend, device, dtype, allow_pickle, trust_remote_code: as in :func:`aigc.load`; ``device="auto"``
            picks the GPU Ray gives an actor.
        output: a folder for ``<key>.<format>`` files, each with its provenance; rows whose file exists are
            skipped, so an interrupted run resumes where it stopped. ``None``: no files.
        format: the file format (see :class:`~aigc.ray.BatchGenerator`; default json/png/wav/mp4).
        id_column: the key column (default ``"id"`` if there is one, else the row's index in the file or list).
        options: backend load options, e.g. ``{"adapter": "lora-dir"}``.
        concurrency: actors (each loads the model once), or ``(min, max)`` for an autoscaling pool.
        batch_size: rows per call of an actor.
        num_gpus: GPUs per actor (``0.5`` puts two actors on one GPU); ``num_cpus``: CPUs per actor (Ray's
            default: 1).
        num_blocks: blocks to split a file or list into (default: four per actor).
        deterministic: see :class:`~aigc.ray.BatchGenerator` (``False`` batches rows through the model).
        include_data: add the media bytes to the returned rows (default: only when there is no ``output``).
        threads: torch CPU threads per actor.
        ray_remote_args: more Ray options for the actors (``memory``, ``accelerator_type``, ...).
        address: the Ray cluster to join when this process has not called ``ray.init`` (``"auto"``,
            ``"ray://head:10001"``; default: ``$RAY_ADDRESS``, else a new local Ray). Refused once Ray is running.
        **params: request parameters for every row (``steps=20``, ``max_new_tokens=64``), checked before Ray
            starts; a row's own columns override them.

    Returns:
        The materialized results: the input columns plus ``seed``, ``text`` (text) or the media bytes,
        ``path``, ``record``, ``status`` (``"generated"``, ``"skipped"``, ``"failed"``) and ``error``. Ray keeps
        no order: sort by the key if you need one (``ds.sort("id")``).

    Raises:
        InvalidRequest: a bad setting or input (missing prompt column, duplicate keys, ...), before any work.
        BackendUnavailable: Ray is not installed (``pip install 'aigc[ray]'``).

    Example:
        >>> res = aigc.ray.generate("captions.jsonl", "image", seed=0, output="out/", concurrency=2,  # doctest: +SKIP
        ...                         num_gpus=0.5, steps=30)
        >>> res.filter(lambda r: r["status"] == "failed").take(5)  # doctest: +SKIP
    """
    # 1. Settings and input, checked before Ray starts.
    if include_data is None:
        include_data = output is None
    settings = check_settings(modality, seed=seed, params=params, id_column=id_column or "id", output=output,
                              format=format, include_data=include_data, deterministic=deterministic)
    _check_resources(concurrency, batch_size, num_gpus, num_cpus, num_blocks)
    try:
        import ray.data
    except ImportError:
        raise BackendUnavailable("aigc.ray needs Ray Data", extra="ray") from None
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING)
    elif address is not None:
        raise InvalidRequest("address", address, "Ray is already running in this process, joined to its cluster",
                             "leave address out, or call ray.shutdown() first")
    actors = concurrency if isinstance(concurrency, int) else concurrency[1]
    if isinstance(data, ray.data.Dataset):
        columns = data.columns()
        key = id_column or "id"
        if key not in columns:
            raise InvalidRequest("id_column", key, f"the dataset has no {key!r} column (it has {columns}); a Dataset "
                                 "has no stable row order to number its rows by (ray-project/ray#50890)",
                                 "add a unique key column, or pass the file it was read from")
        if "prompt" not in columns:
            raise InvalidRequest("data", "<Dataset>", f"has no 'prompt' column (it has {columns})",
                                 "rename the prompt column to 'prompt'")
        dataset = data
    else:
        table, key = read_rows(data, id_column)
        blocks = min(table.num_rows, num_blocks or 4 * actors)
        size = math.ceil(table.num_rows / blocks)
        dataset = ray.data.from_arrow([table.slice(start, size) for start in range(0, table.num_rows, size)])
    if settings.output is not None:
        settings.output.mkdir(parents=True, exist_ok=True)

    # 2. The actor pool.
    remote = dict(ray_remote_args or {})
    if num_gpus is not None:
        remote["num_gpus"] = num_gpus
    if num_cpus is not None:
        remote["num_cpus"] = num_cpus
    kwargs = {"seed": seed, "model": _model_for_actors(model), "backend": backend,
              "device": device, "dtype": dtype, "options": dict(options or {}), "params": dict(params),
              "id_column": key, "output": None if settings.output is None else str(settings.output),
              "format": settings.format, "include_data": include_data, "deterministic": deterministic,
              "allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code, "threads": threads}
    pool = (ray.data.ActorPoolStrategy(size=concurrency) if isinstance(concurrency, int)
            else ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1]))
    mapped = dataset.map_batches(BatchGenerator, fn_constructor_args=(modality,), fn_constructor_kwargs=kwargs,
                                 batch_size=batch_size, batch_format="pyarrow", compute=pool, **remote)
    # 3. Run to the end.
    done: ray.data.Dataset = mapped.materialize()
    return done


def _model_for_actors(model: str | os.PathLike[str] | None) -> str | None:
    """A model folder that exists here as an absolute path (an actor's working folder is not the driver's); a
    built-in name or hub id as it is."""
    if model is None:
        return None
    name = os.fspath(model)
    return os.path.abspath(os.path.expanduser(name)) if os.path.exists(os.path.expanduser(name)) else name


def _check_resources(concurrency: Any, batch_size: Any, num_gpus: Any, num_cpus: Any, num_blocks: Any) -> None:
    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    pool_ok = positive_int(concurrency) or (
        isinstance(concurrency, tuple) and len(concurrency) == 2 and all(positive_int(c) for c in concurrency)
        and concurrency[0] <= concurrency[1])
    if not pool_ok:
        raise InvalidRequest("concurrency", concurrency, "must be a number of actors >= 1, or (min, max)",
                             "pass concurrency=2 or concurrency=(1, 4)")
    if not positive_int(batch_size):
        raise InvalidRequest("batch_size", batch_size, "must be an integer >= 1", "pass batch_size=16")
    if num_blocks is not None and not positive_int(num_blocks):
        raise InvalidRequest("num_blocks", num_blocks, "must be an integer >= 1", "pass num_blocks=8, or None")
    for name, value in (("num_gpus", num_gpus), ("num_cpus", num_cpus)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
                                  or not math.isfinite(value)):
            raise InvalidRequest(name, value, "must be a number >= 0 (a fraction shares a device)",
                                 f"pass {name}=1 or {name}=0.5")


def read_rows(data: str | os.PathLike[str] | Sequence[str] | Sequence[Mapping[str, Any]],
              id_column: str | None = None) -> tuple[pa.Table, str]:
    """The input rows as a table with a key column; return it and the key column's name.

    Without an id column (``id_column``, else ``"id"``), a column ``id`` holds each row's index in the file or
    list (a JSONL file's index counts records: blank lines are not rows).

    Raises:
        InvalidRequest: an unreadable file or an unknown suffix, no rows, no ``prompt`` column, a missing
            ``id_column``, or keys that are missing or not unique.

    Example:
        >>> table, key = read_rows(["an ankle boot", "a sneaker"])
        >>> key, table.column("id").to_pylist()
        ('id', [0, 1])
    """
    import pyarrow as pa

    if isinstance(data, (str, os.PathLike)):
        table = _read_file(Path(os.fspath(data)).expanduser())
    elif isinstance(data, Sequence) and not isinstance(data, bytes):
        rows = [{"prompt": r} if isinstance(r, str) else r for r in data]
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, Mapping)), None)
        if bad is not None:
            raise InvalidRequest(f"data[{bad}]", rows[bad], "a row must be a prompt or a dict",
                                 "pass ['a prompt', ...] or [{'prompt': ...}, ...]")
        table = _table([dict(r) for r in rows], "data")
    else:
        raise InvalidRequest("data", type(data).__name__, "not something aigc.ray reads",
                             "pass a ray.data.Dataset, a .jsonl/.parquet/.csv file, or a list of prompts")
    if table.num_rows == 0:
        raise InvalidRequest("data", "<0 rows>", "there are no rows", "pass at least one prompt")
    if "prompt" not in table.column_names:
        raise InvalidRequest("data", table.column_names, "no 'prompt' column", "name the prompt column 'prompt'")
    if id_column is not None and id_column not in table.column_names:
        raise InvalidRequest("id_column", id_column, f"no such column (there are {table.column_names})",
                             "pass one of them, or leave id_column out to number the rows")
    key = id_column or "id"
    if key not in table.column_names:
        return table.append_column(key, pa.array(range(table.num_rows), pa.int64())), key
    _check_unique(table, key)
    return table, key


def _check_unique(table: pa.Table, key: str) -> None:
    import pyarrow.compute as pc

    column = table.column(key)
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise InvalidRequest(key, None, f"row {row} has no key", f"give every row a {key!r}")
    counts = pc.value_counts(column)
    repeated = [c["values"] for c in counts.to_pylist() if c["counts"] > 1]
    if repeated:
        raise InvalidRequest(key, repeated[0], f"{len(repeated)} key(s) appear more than once; a key names a row's "
                             "seed and its output file", f"make {key!r} unique")


def _read_file(path: Path) -> pa.Table:
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise InvalidRequest("data", str(path), f"unknown file type {path.suffix!r}",
                             f"pass a file ending in {', '.join(sorted(_READERS))}")
    if not path.is_file():
        raise InvalidRequest("data", str(path), "no such file", "check the path")
    if kind == "json":
        rows: list[Any] = []
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise InvalidRequest("data", f"{path}:{number}", f"not a JSON object per line ({e})",
                                         "write one JSON object per line (JSON Lines)") from None
                if not isinstance(rows[-1], dict):
                    raise InvalidRequest("data", f"{path}:{number}", "a line must hold a JSON object",
                                         'write e.g. {"prompt": "an ankle boot"}')
        return _table(rows, str(path))
    import pyarrow as pa

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    except (pa.ArrowException, OSError) as e:
        raise InvalidRequest("data", str(path), f"cannot be read as {kind} ({e})", "check the file") from None


def _table(rows: list[dict[str, Any]], where: str) -> pa.Table:
    import pyarrow as pa

    names = list(dict.fromkeys(name for row in rows for name in row))  # every row's columns, not the first's
    columns = {}
    for name in names:
        try:
            columns[name] = pa.array([row.get(name) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InvalidRequest("data", where, f"column {name!r} holds values of different types ({e})",
                                 "give each column one type (numbers as numbers, not strings)") from None
    if rows and not columns:
        raise InvalidRequest("data", where, "the rows have no columns", "give each row a 'prompt'")
    return pa.table(columns) if columns else pa.table({"prompt": pa.array([], pa.string())})
