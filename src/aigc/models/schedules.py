"""Noise schedules and the DDPM and DDIM samplers, computed as diffusers' schedulers compute them -- without diffusers.

A class-diffusion model folder stores its training schedule as a diffusers scheduler config
(``scheduler/scheduler_config.json``). :func:`make_sampler` builds a sampler from it: the betas (linear, scaled
linear, or the cosine schedule of Nichol & Dhariwal 2021), the inference timesteps (``leading``, ``trailing`` or
``linspace`` spacing) and the update of each step, with diffusers' float32 arithmetic in diffusers' order, so a run
matches ``diffusers.DDPMScheduler`` / ``DDIMScheduler`` to the last bit. Configs that use a feature not here
(dynamic thresholding, zero-terminal-SNR rescaling, learned variances) give ``None``: use diffusers for those.

Per-step noise (DDPM) comes only from the explicit generators passed to ``step``: row *i* of the noise is drawn on
the CPU from generator *i* and then moved, so a sample's noise does not depend on the batch or the device.

Example:
    >>> sampler = make_sampler("ddim", {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}, steps=4)
    >>> sampler.timesteps.tolist()
    [750, 500, 250, 0]
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["DDIMSampler", "DDPMSampler", "Sampler", "betas", "make_sampler", "timesteps"]

SAMPLERS = ("ddpm", "ddim")
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_SPACINGS = ("leading", "trailing", "linspace")
_PREDICTIONS = ("epsilon", "sample", "v_prediction")
_VARIANCES = ("fixed_small", "fixed_large")


class Sampler(Protocol):
    """One reverse-diffusion sampler, set up for a number of steps.

    Attributes:
        timesteps: the training timesteps visited, in order (descending), int64.
        init_noise_sigma: the standard deviation of x_T.
        stochastic: whether ``step`` draws fresh noise (then it needs one generator per row).
    """

    timesteps: torch.Tensor
    init_noise_sigma: float
    stochastic: bool

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """What the network sees at ``timestep`` (the identity for DDPM and DDIM)."""
        ...

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, *,
             generator: list[torch.Generator] | None = None) -> torch.Tensor:
        """x_t -> x_{t-1}, given the network's output at x_t."""
        ...


def _alpha_bar_cosine(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def betas(config: dict[str, Any]) -> torch.Tensor:
    """The training betas (T,) float32 of a diffusers scheduler config.

    ``squaredcos_cap_v2`` is the cosine schedule (Nichol & Dhariwal 2021, eq. 17) with betas capped at 0.999.

    Example:
        >>> betas({"num_train_timesteps": 10, "beta_schedule": "linear", "beta_start": 0.1, "beta_end": 0.2})[:2]
        tensor([0.1000, 0.1111])
    """
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    schedule = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float32)
    if schedule == "linear":
        return torch.linspace(start, end, n, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        return torch.tensor([min(1 - _alpha_bar_cosine((i + 1) / n) / _alpha_bar_cosine(i / n), 0.999)
                             for i in range(n)], dtype=torch.float32)
    raise ValueError(f"beta_schedule={schedule!r} is not one of {_BETA_SCHEDULES}")


def timesteps(config: dict[str, Any], steps: int) -> torch.Tensor:
    """The ``steps`` training timesteps a sampler visits (descending, int64), spaced as ``timestep_spacing`` says
    (Lin et al. 2023, table 2: ``leading``, ``trailing``, ``linspace``).

    Example:
        >>> timesteps({"num_train_timesteps": 1000, "timestep_spacing": "trailing"}, 4).tolist()
        [999, 749, 499, 249]
    """
    n = int(config.get("num_train_timesteps", 1000))
    spacing = config.get("timestep_spacing", "leading")
    if steps < 1 or steps > n:
        raise ValueError(f"steps={steps} must be between 1 and the {n} training timesteps")
    if spacing == "linspace":
        ts = np.linspace(0, n - 1, steps).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = n // steps
        ts = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.int64)
        ts += int(config.get("steps_offset", 0))
    elif spacing == "trailing":
        ts = np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1
    else:
        raise ValueError(f"timestep_spacing={spacing!r} is not one of {_SPACINGS}")
    return torch.from_numpy(ts)


def _step_noise(shape: torch.Size, generator: list[torch.Generator] | None, like: torch.Tensor) -> torch.Tensor:
    """(B, ...) standard normal noise, row i from ``generator[i]`` on that generator's device, then moved."""
    if generator is None or len(generator) != shape[0]:
        raise ValueError(f"a stochastic step needs one generator per row: {shape[0]} rows, "
                         f"{None if generator is None else len(generator)} generators")
    rows = [torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=like.dtype) for g in generator]
    return torch.cat(rows).to(like.device)


class _Base:
    """The schedule shared by both samplers: alpha_bar_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, sec. 2)."""

    init_noise_sigma = 1.0
    stochastic = False

    def __init__(self, config: dict[str, Any], steps: int) -> None:
        self.config = config
        self.num_train_timesteps = int(config.get("num_train_timesteps", 1000))
        self.alphas_cumprod = torch.cumprod(1.0 - betas(config), dim=0)  # (T,) alpha_bar_t
        self.prediction_type = str(config.get("prediction_type", "epsilon"))
        self.clip_sample = bool(config.get("clip_sample", True))
        self.clip_sample_range = float(config.get("clip_sample_range", 1.0))
        self.steps = steps
        self.timesteps = timesteps(config, steps)

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return sample

    def _x0_eps(self, model_output: torch.Tensor, sample: torch.Tensor,
                alpha_prod_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted x_0 (clipped when the config says so) and eps, from any of the three parametrisations."""
        beta_prod_t = 1 - alpha_prod_t
        if self.prediction_type == "epsilon":  # x_0 = (x_t - sqrt(1 - a) eps) / sqrt(a)  (Ho et al. 2020, eq. 15)
            x0 = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (sample - alpha_prod_t ** (0.5) * x0) / beta_prod_t ** (0.5)
        else:  # v_prediction (Salimans & Ho 2022, sec. 4)
            x0 = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
            eps = (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0, eps


class DDPMSampler(_Base):
    """Ancestral sampling (Ho et al. 2020, eq. 6-7 and Algorithm 2), fresh noise at every step but the last.

    Example:
        >>> s = DDPMSampler({"num_train_timesteps": 100}, steps=2)
        >>> x = s.step(torch.zeros(1, 1, 2, 2), s.timesteps[0], torch.ones(1, 1, 2, 2),
        ...            generator=[torch.Generator().manual_seed(0)])
        >>> x.shape
        torch.Size([1, 1, 2, 2])
    """

    stochastic = True

    def __init__(self, config: dict[str, Any], steps: int) -> None:
        super().__init__(config, steps)
        self.variance_type = str(config.get("variance_type", "fixed_small"))
        self.one = torch.tensor(1.0)

    def _prev(self, timestep: torch.Tensor) -> torch.Tensor:
        index = int((self.timesteps == timestep).nonzero(as_tuple=True)[0][0])
        return self.timesteps[index + 1] if index + 1 < len(self.timesteps) else torch.tensor(-1)

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, *,
             generator: list[torch.Generator] | None = None) -> torch.Tensor:
        t = timestep
        prev_t = self._prev(t)
        # 1. alpha_bar_t, alpha_bar_{t-1} and the step's own alpha_t = alpha_bar_t / alpha_bar_{t-1}.
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        # 2. x_0 from the network's output.
        x0, _ = self._x0_eps(model_output, sample, alpha_prod_t)
        # 3. The posterior mean mu~_t(x_t, x_0)  (Ho et al. 2020, eq. 7).
        x0_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        xt_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        prev = x0_coeff * x0 + xt_coeff * sample
        # 4. Plus sigma_t z, sigma_t^2 = beta~_t (fixed_small, eq. 7) or beta_t (fixed_large); none at t = 0.
        if t > 0:
            noise = _step_noise(model_output.shape, generator, model_output)
            if self.variance_type == "fixed_large":
                variance = current_beta_t
            else:
                beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
                variance = torch.clamp((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * beta_t, min=1e-20)
            prev = prev + (variance**0.5) * noise
        return prev


class DDIMSampler(_Base):
    """Deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0): x_{t-1} = sqrt(a_{t-1}) x_0 + sqrt(1 - a_{t-1}) eps.

    Example:
        >>> s = DDIMSampler({"num_train_timesteps": 100}, steps=2)
        >>> s.step(torch.zeros(1, 1, 2, 2), s.timesteps[0], torch.ones(1, 1, 2, 2)).shape
        torch.Size([1, 1, 2, 2])
    """

    def __init__(self, config: dict[str, Any], steps: int) -> None:
        super().__init__(config, steps)
        self.final_alpha_cumprod = (torch.tensor(1.0) if config.get("set_alpha_to_one", True)
                                    else self.alphas_cumprod[0])

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, *,
             generator: list[torch.Generator] | None = None) -> torch.Tensor:
        # 1. alpha_bar of this step and of the one a stride earlier (diffusers' stride, whatever the spacing).
        prev_timestep = timestep - self.num_train_timesteps // self.steps
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        # 2. x_0 and eps, 3. eq. 12 with sigma_t = 0.
        x0, eps = self._x0_eps(model_output, sample, alpha_prod_t)
        direction = (1 - alpha_prod_t_prev) ** (0.5) * eps
        return alpha_prod_t_prev ** (0.5) * x0 + direction


def make_sampler(name: str, config: dict[str, Any], *, steps: int) -> Sampler | None:
    """The ``"ddpm"`` or ``"ddim"`` sampler for a diffusers scheduler config, set up for ``steps`` steps; ``None``
    when the name or the config asks for something only diffusers has.

    Example:
        >>> make_sampler("ddpm", {"beta_schedule": "squaredcos_cap_v2"}, steps=50).timesteps[:3].tolist()
        [980, 960, 940]
        >>> make_sampler("euler", {}, steps=50) is None
        True
    """
    if name not in SAMPLERS:
        return None
    if config.get("thresholding") or config.get("rescale_betas_zero_snr"):
        return None
    if config.get("trained_betas") is None and config.get("beta_schedule", "linear") not in _BETA_SCHEDULES:
        return None
    if (config.get("timestep_spacing", "leading") not in _SPACINGS
            or config.get("prediction_type", "epsilon") not in _PREDICTIONS):
        return None
    if name == "ddpm":
        if config.get("variance_type", "fixed_small") not in _VARIANCES:
            return None
        return DDPMSampler(config, steps)
    return DDIMSampler(config, steps)
