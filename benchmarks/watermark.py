"""Watermark figures: detection after sharing, false positives on unmarked content, and the quality cost.

    python benchmarks/watermark.py                 # all three modalities (a few minutes on 2 CPU cores)
    python benchmarks/watermark.py --only image --images 500

Images (aigc.watermark.image): natural-statistics images (dead leaves, 1/f noise; aigc.testing.watermark) at 64,
96, 128, 200 and 256 pixels, each marked with its own key, then re-encoded as a platform would: a 0.5x bicubic
resize and JPEG quality 75. Detection = the mark found *and* its 32-bit key read exactly or matched (the key is
what finds the record). False positives: the same images unmarked, through the same attack. Quality: PSNR of the
marked image.
With ``invisible-watermark`` installed, its DWT-DCT (diffusers' SDXL watermark, 48 bits) runs through the same
attack for comparison (at 256 and 512 pixels: its encoder refuses smaller images), decoded at the attacked size
and after scaling back up.

Audio (aigc.watermark.audio): speech-like clips (aigc.testing.watermark.speechlike) of 2 and 4 s at 16, 22.05
and 44.1 kHz, marked, resampled to 16 kHz, then Ogg Vorbis (and MP3). Quality: SNR of the marked clip.

Video (aigc.watermark.image on every frame): 8-frame clips of a natural-statistics texture drifting right, at 96
and 128 pixels, marked, then decoded and encoded again with H.264 (libx264 through PyAV, 4:2:0) at CRF 23
(ffmpeg's default) and 28, at full size, 0.75x and 0.5x. Detected: found without a key and the key read or
matched; matched: the known key agrees with the soft bits (what ``aigc.verify`` does with the keys in the record
store, for a faint mark). False positives: the unmarked clips through the same attack.

Text (aigc.sampling.watermark): the embedded text model, 200 new tokens per sample with and without the watermark;
detection at z >= 3.09 (0.1 % false positives per key); false positives: unmarked samples scored with their
seed's key; quality: perplexity of the samples under the model itself, and tokens per second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import numpy as np


def _psnr(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def images(count: int) -> dict[str, Any]:
    from aigc.testing.watermark import jpeg, natural_images, shrink
    from aigc.watermark import image

    out: dict[str, Any] = {}
    for size in (64, 96, 128, 256, 200):
        n = count if size == 64 else max(count // 4, 10)
        hits = exact = false = 0
        psnrs, scores, null_scores = [], [], []
        t0 = time.perf_counter()
        for i, im in enumerate(natural_images(n, size, seed=1000 * size)):
            key = f"{(i * 2654435761 + size) & 0xFFFFFFFF:08x}"
            marked = image.embed(im, key)
            psnrs.append(_psnr(np.asarray(im), np.asarray(marked)))
            det = image.detect(jpeg(shrink(marked), quality=75))
            scores.append(det.score)
            hits += det.matches(key)
            exact += det.key == key
            null = image.detect(jpeg(shrink(im), quality=75))
            null_scores.append(null.score)
            false += null.present
        out[f"{size}px"] = {"images": n, "detected": hits / n, "key_exact": exact / n, "false_positive": false / n,
                            "psnr_db_mean": float(np.mean(psnrs)), "psnr_db_min": float(np.min(psnrs)),
                            "score_marked_min": float(np.min(scores)), "score_unmarked_max": float(np.max(null_scores)),
                            "seconds_per_embed": (time.perf_counter() - t0) / n / 2}
    out["invisible_watermark_dwtdct"] = _invisible_watermark(count)
    return out


def _invisible_watermark(count: int) -> dict[str, Any] | str:
    try:
        from imwatermark import WatermarkDecoder, WatermarkEncoder
    except ImportError:
        return "not installed (pip install invisible-watermark to compare)"
    from PIL import Image

    from aigc.testing.watermark import jpeg, natural_images, shrink

    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"64px": "refused: its encoder needs at least 256x256 pixels"}
    for size in (256, 512):
        counts = {"no_attack": 0, "jpeg75": 0, "jpeg75_half_at_attacked_size": 0, "jpeg75_half_scaled_back": 0}
        psnrs = []
        ims = natural_images(max(count // 4, 10), size, seed=7)
        dec = WatermarkDecoder("bits", 48)

        def read(img: Any, dec: Any = dec) -> list[int] | None:
            try:
                return [int(b) for b in dec.decode(np.asarray(img)[:, :, ::-1].copy(), "dwtDct")]
            except RuntimeError:  # "image too small"
                return None

        for im in ims:
            bits = [int(b) for b in rng.integers(0, 2, 48)]
            enc = WatermarkEncoder()
            enc.set_watermark("bits", bits)
            marked = Image.fromarray(enc.encode(np.asarray(im)[:, :, ::-1].copy(), "dwtDct")[:, :, ::-1].copy())
            psnrs.append(_psnr(np.asarray(im), np.asarray(marked)))
            attacked = jpeg(shrink(marked), quality=75)
            for name, img in (("no_attack", marked), ("jpeg75", jpeg(marked, quality=75)),
                              ("jpeg75_half_at_attacked_size", attacked),
                              ("jpeg75_half_scaled_back", attacked.resize(im.size, Image.Resampling.BICUBIC))):
                counts[name] += read(img) == bits
        results[f"{size}px"] = {"images": len(ims), **{f"bits_exact_{k}": v / len(ims) for k, v in counts.items()},
                                "psnr_db_mean": float(np.mean(psnrs))}
    return results


def audio(count: int) -> dict[str, Any]:
    from aigc.testing.watermark import reencode_audio, resample_audio, speechlike
    from aigc.watermark import audio as wm

    out: dict[str, Any] = {}
    for seconds in (2.0, 4.0):
        for rate in (16_000, 22_050, 44_100):
            n = count if rate == 16_000 else max(count // 2, 4)
            hits = {"ogg": 0, "mp3": 0}
            false = 0
            snrs = []
            t0 = time.perf_counter()
            for i in range(n):
                clip = speechlike(seconds, rate, seed=int(seconds * 1000) + rate + i)
                key = f"{(i * 2246822519 + rate) & 0xFFFFFFFF:08x}"
                marked = wm.embed(clip, rate, key)
                snrs.append(10 * math.log10(float((clip**2).sum()) / float(((marked - clip) ** 2).sum())))
                at16 = resample_audio(marked, rate, 16_000)
                for fmt in ("ogg", "mp3"):
                    wave, r = reencode_audio(at16, 16_000, fmt=fmt.upper())
                    hits[fmt] += wm.detect(wave, r).matches(key)
                null, r = reencode_audio(resample_audio(clip, rate, 16_000), 16_000, fmt="OGG")
                false += wm.detect(null, r).present
            out[f"{seconds:g}s@{rate}Hz"] = {"clips": n, "detected_ogg": hits["ogg"] / n,
                                            "detected_mp3": hits["mp3"] / n, "false_positive": false / n,
                                            "snr_db_mean": float(np.mean(snrs)),
                                            "snr_db_min": float(np.min(snrs)),
                                            "seconds_per_clip": (time.perf_counter() - t0) / n}
    return out


def video(count: int) -> dict[str, Any]:
    from aigc.testing.watermark import drifting_clip, h264, natural_images
    from aigc.watermark import image
    from aigc.watermark._payload import MATCH_AT

    out: dict[str, Any] = {}
    attacks = [(23, 1.0), (23, 0.75), (23, 0.5), (28, 1.0), (28, 0.75)]
    for size in (96, 128):
        hits = dict.fromkeys(attacks, 0)
        matched = dict.fromkeys(attacks, 0)
        false = dict.fromkeys(attacks, 0)
        psnrs = []
        for i, im in enumerate(natural_images(count, size, seed=3000 + size)):
            clip = drifting_clip(im, seed=size + i)
            key = f"{(i * 2654435761 + size + 1) & 0xFFFFFFFF:08x}"
            marked = image.embed_frames(clip, key)
            psnrs.append(_psnr(clip, marked))
            for crf, scale in attacks:
                det = image.detect_frames(h264(marked, scale=scale, crf=crf))
                hits[(crf, scale)] += det.matches(key)
                matched[(crf, scale)] += det.match(key) >= MATCH_AT
                false[(crf, scale)] += image.detect_frames(h264(clip, scale=scale, crf=crf)).present
        out[f"{size}px"] = {"clips": count, "psnr_db_mean": float(np.mean(psnrs)), **{
            f"crf{crf}_x{scale:g}": {"detected": hits[(crf, scale)] / count, "matched": matched[(crf, scale)] / count,
                                     "false_positive": false[(crf, scale)] / count} for crf, scale in attacks}}
    return out


def text(count: int, tokens: int) -> dict[str, Any]:
    import torch

    import aigc
    from aigc.sampling.watermark import Z_THRESHOLD, key_hex, score

    gen = aigc.load("text", device="cpu")
    prompts = ["ROMEO:", "JULIET:", "First Citizen:", "KING RICHARD III:", "床前明月光，"]
    ppl: dict[str, list[float]] = {"on": [], "off": []}
    z: dict[str, list[float]] = {"on": [], "off": []}
    speed: dict[str, float] = {}
    for mode in ("off", "on"):
        start = time.perf_counter()
        generated = 0
        for i in range(count):
            prompt = prompts[i % len(prompts)]
            res = gen.generate(prompt, max_new_tokens=tokens, seed=100 + i, watermark=mode == "on", progress=False,
                               stop=[])
            ids = res.token_ids[0]
            generated += len(ids)
            z[mode].append(score(ids, key_hex(100 + i)).z)
            ppl[mode].append(_perplexity(gen, prompt, ids))
        speed[mode] = generated / (time.perf_counter() - start)
    del torch
    return {"samples": count, "new_tokens": tokens, "z_threshold": Z_THRESHOLD,
               "detected": float(np.mean([v >= Z_THRESHOLD for v in z["on"]])),
               "false_positive": float(np.mean([v >= Z_THRESHOLD for v in z["off"]])),
               "z_marked_median": float(np.median(z["on"])), "z_marked_min": float(np.min(z["on"])),
               "z_unmarked_max": float(np.max(z["off"])),
               "perplexity_off": float(np.exp(np.mean(np.log(ppl["off"])))),
               "perplexity_on": float(np.exp(np.mean(np.log(ppl["on"])))),
               "tokens_per_s_off": speed["off"], "tokens_per_s_on": speed["on"]}


def _perplexity(gen: Any, prompt: str, ids: list[int]) -> float:
    """exp(mean negative log-likelihood) of the generated tokens under the model, at temperature 1."""
    import torch

    tok, lm = gen.tokenizer, gen.lm
    context = list(tok(prompt)["input_ids"])
    full = torch.tensor([context + ids])
    with torch.inference_mode():
        logits = lm(input_ids=full).logits[0, len(context) - 1:-1].float()
    nll = torch.nn.functional.cross_entropy(logits, full[0, len(context):], reduction="mean")
    return float(torch.exp(nll))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["image", "audio", "video", "text"])
    parser.add_argument("--images", type=int, default=200, help="64 px images (a quarter of that at 128/256)")
    parser.add_argument("--clips", type=int, default=24, help="16 kHz clips per duration (half at other rates)")
    parser.add_argument("--videos", type=int, default=20, help="clips per frame size")
    parser.add_argument("--texts", type=int, default=40, help="text samples with and without the watermark")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    figures: dict[str, Any] = {}
    if args.only in (None, "image"):
        figures["image"] = images(args.images)
    if args.only in (None, "audio"):
        figures["audio"] = audio(args.clips)
    if args.only in (None, "video"):
        figures["video"] = video(args.videos)
    if args.only in (None, "text"):
        figures["text"] = text(args.texts, args.tokens)
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
