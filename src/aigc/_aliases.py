"""Hugging Face's parameter names, understood: a request field that transformers or diffusers spells differently is
accepted under their name where the meaning is the same (and recorded under aigc's), and refused with aigc's name
where it differs. No torch at import.

Example:
    >>> import aigc
    >>> aigc.ImageRequest.from_params("a cat", num_inference_steps=20, guidance_scale=7.5).steps
    20
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from aigc.errors import InvalidRequest

__all__ = ["ALIASES", "REFUSED", "translate"]

#: Hugging Face's name -> aigc's, where they mean the same
ALIASES: dict[str, str] = {
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "num_images_per_prompt": "num_outputs",
    "num_videos_per_prompt": "num_outputs",
    "num_waveforms_per_prompt": "num_outputs",
    "num_return_sequences": "num_outputs",
    "image": "init_image",
    "mask_image": "mask",
    "audio_length_in_s": "duration_s",
}
#: Hugging Face's names whose meaning differs in aigc: what to pass instead
REFUSED: dict[str, str] = {
    "generator": "pass seed= (aigc's name: each sample draws from its own seed, never from a torch.Generator)",
    "max_length": "pass max_new_tokens= (aigc's name; max_length counts the prompt's tokens too)",
    "output_type": "leave it out: results are typed (PIL images, arrays), and save() picks the file format",
    "return_dict": "leave it out: generate() always returns a typed result",
    "latents": "pass seed= (aigc draws the latents from each sample's seed, so they can be recorded and replayed)",
}


def translate(params: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """``params`` with Hugging Face's names turned into aigc's (for the request fields ``names``).

    Raises:
        InvalidRequest: a name whose meaning differs (with aigc's to use), or a field given under both names.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        target = ALIASES.get(name)
        if name in names or (target is None and name not in REFUSED):
            out[name] = value  # aigc's own name, or unknown (refused with a suggestion by the request)
        elif target is not None and target in names:
            if target in params:
                raise InvalidRequest(name, value, f"given twice: {name} is Hugging Face's name for {target}",
                                     f"pass only {target}=")
            out[target] = value
        elif name in REFUSED:
            raise InvalidRequest(name, value, "Hugging Face's name for something aigc does differently", REFUSED[name])
        else:
            out[name] = value
    return out
