"""``aigc.ray``: batch generation over datasets with Ray Data, and ``aigc serve`` on Ray Serve
(``pip install 'aigc[ray]'``).

- :func:`generate`: a dataset, a JSONL/Parquet/CSV file or a list of prompts in, one output file per row out
  (with its provenance; resumable), on an actor pool that loads the model once per actor;
- :class:`BatchGenerator`: the callable class behind it, for your own ``Dataset.map_batches`` pipelines;
- :func:`row_seed`: a row's seed, from the run's seed and the row's key -- never from the row's place in a batch,
  so an output does not depend on how Ray split the work;
- :func:`deployment`: the OpenAI-compatible app of ``aigc serve`` as a Ray Serve application, with replicas,
  autoscaling and many LoRA adapters on one base model multiplexed across the replicas.

The command line: ``aigc batch image prompts.jsonl -o out/ --seed 0 --concurrency 2`` and ``aigc serve --ray``.

The package is named after the engine it drives: everything here is Ray's API (``map_batches``, actors, Serve
deployments), not an engine-neutral layer. Importing it imports no Ray; the functions do.

Example:
    >>> res = aigc.ray.generate(["an ankle boot", "a sneaker"], "image", seed=0, output="out")  # doctest: +SKIP
    >>> sorted(r["path"] for r in res.take_all())  # doctest: +SKIP
    ['/.../out/0.png', '/.../out/1.png']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aigc.errors import BackendUnavailable
from aigc.ray._batch import OUTPUT_COLUMNS, BatchGenerator
from aigc.ray._pipeline import generate, read_rows
from aigc.ray._rows import FORMATS, row_seed

if TYPE_CHECKING:
    from ray.serve import Application

    from aigc.serve import ModelSpec, ServeConfig

__all__ = ["FORMATS", "OUTPUT_COLUMNS", "BatchGenerator", "deployment", "generate", "read_rows", "row_seed", "run"]


def deployment(
    models: Sequence[ModelSpec] | None = None,
    *,
    config: ServeConfig | None = None,
    adapters: Mapping[str, str] | None = None,
    base: str | None = None,
    adapter_option: str | None = None,
    max_adapters_per_replica: int = 4,
    num_replicas: int | str | None = None,
    max_ongoing_requests: int | None = None,
    autoscaling_config: Mapping[str, Any] | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    router_replicas: int = 1,
) -> Application:
    """The OpenAI-compatible server of ``aigc serve`` as a Ray Serve application: ``serve.run(deployment(...))``.

    Two deployments: a light router (the HTTP ingress) that reads each request's ``model`` and forwards it, and
    the models (``num_replicas`` replicas, or autoscaled), each replica running the same application as
    ``aigc serve`` -- same routes, limits, batching and records. A request for an adapter goes to a replica that
    has it loaded (Ray Serve model multiplexing); a replica holds ``max_adapters_per_replica`` adapters at most,
    dropping the least recently used.

    Args:
        models: what each replica serves (:class:`aigc.serve.ModelSpec`; ``None``: the embedded default of every
            modality).
        config: the server's settings (:class:`aigc.serve.ServeConfig`); ``host``/``port`` are Ray Serve's HTTP
            options (``serve.start(http_options=...)``), not this application's.
        adapters: served name -> adapter folder (a text LoRA, or a LoRA for the diffusers image backend), each
            served as a model of its own on top of ``base``.
        base: the served id of the model the adapters apply to (default: the only model).
        adapter_option: the load option that takes the folder (default ``adapter`` for text, ``lora`` for images).
        max_adapters_per_replica: adapters a replica keeps loaded.
        num_replicas: model replicas (``"auto"`` to autoscale with Ray's defaults); ``None``: 1 unless
            ``autoscaling_config`` is given.
        max_ongoing_requests: requests a model replica takes at once (default ``config.max_concurrent``); more
            wait in Ray's queue, or go to another replica.
        autoscaling_config: Ray Serve's autoscaling settings (``min_replicas``, ``max_replicas``,
            ``target_ongoing_requests``, ...), passed through.
        ray_actor_options: resources of a model replica (``{"num_gpus": 1}``, ``{"num_cpus": 2}``).
        router_replicas: router replicas.

    Raises:
        InvalidRequest: a bad setting, an adapter without a base. BackendUnavailable: Ray Serve missing.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> app = aigc.ray.deployment([aigc.serve.ModelSpec(modality="text", model="/models/gpt2", id="gpt2")],
        ...                           adapters={"poet": "/loras/poet"}, num_replicas=2,
        ...                           ray_actor_options={"num_gpus": 1})  # doctest: +SKIP
        >>> serve.run(app, route_prefix="/")  # doctest: +SKIP
    """
    try:
        from aigc.ray._serve import build_deployment
    except ImportError as e:
        raise BackendUnavailable(f"aigc.ray.deployment needs Ray Serve ({e.name} is missing)", extra="ray") from None
    return build_deployment(models, config=config, adapters=adapters, base=base, adapter_option=adapter_option,
                            max_adapters_per_replica=max_adapters_per_replica, num_replicas=num_replicas,
                            max_ongoing_requests=max_ongoing_requests, autoscaling_config=autoscaling_config,
                            ray_actor_options=ray_actor_options, router_replicas=router_replicas)


def run(models: Sequence[ModelSpec] | None = None, *, config: ServeConfig | None = None, address: str | None = None,
        name: str = "aigc", **deployment_options: Any) -> None:
    """Deploy :func:`deployment` on Ray Serve and block until Ctrl-C (what ``aigc serve --ray`` runs).

    Args:
        models, config: as :func:`deployment`; ``config.host`` and ``config.port`` are where Ray Serve's HTTP proxy
            listens (applied when this call starts Serve; a cluster whose Serve already runs keeps its own).
        address: the Ray cluster (``"auto"``, ``"ray://head:10001"``); ``None`` starts a local one.
        name: the Serve application's name (deleted again on exit).
        **deployment_options: :func:`deployment`'s other keywords (``num_replicas``, ``adapters``, ...).

    Example:
        >>> aigc.ray.run([aigc.serve.ModelSpec(modality="text")], num_replicas=2)  # doctest: +SKIP
    """
    try:
        from aigc.ray._serve import run as run_on_ray
    except ImportError as e:
        raise BackendUnavailable(f"aigc.ray.run needs Ray Serve ({e.name} is missing)", extra="ray") from None
    run_on_ray(models, config=config, address=address, name=name, **deployment_options)
