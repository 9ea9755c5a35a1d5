"""The aigc error tree.

Every error raised on purpose by aigc derives from :class:`AigcError`, and each one says what went
wrong *and how to fix it*. Errors about user input are raised before any model is loaded or any
tensor is allocated, wherever that is possible.

::

    AigcError
    ├── InvalidRequest          (also a ValueError)   a parameter has a bad value; names it, its value, the fix
    ├── ModelNotFound           (also a FileNotFoundError) no model at that path / id / built-in name
    ├── BackendNotFound         (also a LookupError)   no backend registered under that modality and name
    ├── BackendUnavailable      (also an ImportError)  the backend needs a package that is not installed
    ├── PluginError                                    a plugin failed to import, or two claim one name
    ├── UnsafeModelFile                                pickle weights refused (pass allow_pickle=True)
    ├── DeviceUnavailable                              the requested device is not present
    ├── GenerationCancelled                            an event callback cancelled the run
    ├── OutOfMemory             (also a MemoryError)   with the option that would help
    ├── ProvenanceError                                a file carries no readable aigc record, a malformed one,
    │                                                  or one replay will not trust with a load option
    └── TrainingDiverged        (also a FloatingPointError)
                                                       a training loss became NaN or infinite; names the step,
                                                       the loss and what to change

Warnings go through :class:`AigcWarning`; :class:`ProvenanceWarning` when ``aigc.replay(strict=False)`` runs
with other weights than those that made the file.

Example:
    >>> import aigc
    >>> try:
    ...     aigc.TextRequest(prompt="hi", max_new_tokens=0)
    ... except aigc.errors.InvalidRequest as e:
    ...     print(e.field)
    max_new_tokens
"""

from __future__ import annotations

__all__ = [
    "AigcError",
    "AigcWarning",
    "BackendNotFound",
    "BackendUnavailable",
    "DeviceUnavailable",
    "GenerationCancelled",
    "InvalidRequest",
    "ModelNotFound",
    "OutOfMemory",
    "PluginError",
    "PromptWarning",
    "ProvenanceError",
    "ProvenanceWarning",
    "TrainingDiverged",
    "UnsafeModelFile",
]


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AigcError(Exception):
    """Base class of every error aigc raises on purpose."""


class AigcWarning(UserWarning):
    """Base class of aigc's warnings."""


class InvalidRequest(AigcError, ValueError):
    """A request parameter (or a load option) has a value aigc cannot use.

    Attributes:
        field: the parameter's name, as the user spelt it.
        value: the offending value.
        fix: one sentence telling the user what to pass instead.
    """

    def __init__(self, field: str, value: object, problem: str, fix: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}={_short(value)}: {problem}. Fix: {fix}")


class ModelNotFound(AigcError, FileNotFoundError):
    """No model could be found at the given path, hub id or built-in name."""


class BackendNotFound(AigcError, LookupError):
    """No backend is registered under the requested modality and name."""


class BackendUnavailable(AigcError, ImportError):
    """A backend needs an optional package that is not installed.

    Attributes:
        extra: the ``pip install 'aigc[EXTRA]'`` extra that provides it, when there is one.
    """

    def __init__(self, message: str, *, extra: str | None = None) -> None:
        self.extra = extra
        if extra:
            message = f"{message}. Fix: pip install 'aigc[{extra}]'"
        super().__init__(message)


class PluginError(AigcError):
    """A plugin backend could not be used: it failed to import, or it clashes with another.

    Attributes:
        plugin: the entry-point name (``"modality.name"``) and, when known, the distribution.
    """

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin}: {message}")


class UnsafeModelFile(AigcError):
    """A model directory holds only pickle-based weights, which can run arbitrary code when loaded."""


class DeviceUnavailable(AigcError):
    """The requested device (e.g. ``"cuda"``) is not available in this process."""


class GenerationCancelled(AigcError):
    """An event callback cancelled a generation that has no partial result to return."""


class OutOfMemory(AigcError, MemoryError):
    """The device ran out of memory.

    Attributes:
        suggestion: the option that would most likely help (e.g. ``offload="model"``).
    """

    def __init__(self, message: str, *, suggestion: str) -> None:
        self.suggestion = suggestion
        super().__init__(f"{message}. Fix: {suggestion}")


class ProvenanceError(AigcError):
    """A file carries no aigc provenance record, or one that cannot be read or trusted.

    :func:`aigc.replay` raises it for a malformed record, for a record that asks to load with an option replay
    never takes from a file (``trust_remote_code``, ``allow_pickle``, ...; the message names the argument to
    pass), and for weights that differ from those that made the file.
    """


class PromptWarning(AigcWarning):
    """Part of a prompt names something the model cannot draw (a class-conditional model draws its classes,
    not colours or scenes); the warning names the words it ignored."""


class ProvenanceWarning(AigcWarning):
    """A replay could not be checked, or runs with other weights than those that made the file
    (``aigc.replay(..., strict=False)``)."""


class TrainingDiverged(AigcError, FloatingPointError):
    """A training loss became NaN or infinite; the run stopped before that step changed any weight.

    Runs are deterministic, so resuming from a checkpoint with the same settings diverges again at the same
    step: the fix changes a setting (a lower learning rate, clipping, a longer warm-up) and starts again.

    Attributes:
        step: the 1-based step whose loss diverged.
        losses: the values of that step, by name (``{"loss": nan}``; for a GAN ``d_loss`` and ``g_loss``).
        fix: what to change.

    Example:
        >>> e = TrainingDiverged(12, {"loss": float("nan")}, fix="lower lr (it is 0.5)")
        >>> str(e)
        'the training loss became nan at step 12. Fix: lower lr (it is 0.5)'
    """

    def __init__(self, step: int, losses: dict[str, float], *, fix: str) -> None:
        self.step = step
        self.losses = dict(losses)
        self.fix = fix
        if len(self.losses) == 1:
            (name, value), = self.losses.items()
            what = f"the training {name.replace('_', ' ')} became {value}"
        else:
            what = "the training losses became " + ", ".join(f"{k}={v}" for k, v in self.losses.items())
        super().__init__(f"{what} at step {step}. Fix: {fix}")
