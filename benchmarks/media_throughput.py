"""Audio and video throughput: aigc's backends against calling transformers / diffusers directly, same model.

Models are random and built in code (the ``aigc.testing`` builders), saved with ``save_pretrained``; both sides
load the same directory and run the same prompt, length, guidance and steps:

  (a) MusicGen, one clip of 64 tokens (2 s): aigc (its own seeded token sampling, top-k 250 as MusicGen's
      default) vs ``model.generate(do_sample=True, top_k=250)``. Target: aigc overhead <= 10 %. A 2 s clip
      carries aigc's audio watermark by default; a second line gives the same call with ``watermark=False``.
  (b) MusicGen, 4 clips: one aigc batch vs 4 single aigc calls. Target: >= 1.5x.
  (c) ModelScope text-to-video, one 8-frame clip: aigc vs ``pipe(...)`` with the same latents. Target <= 5 %.
  (d) The embedded word speaker: clips per second, one call of 16 vs 16 single calls.

Run:  python benchmarks/media_throughput.py [--threads 1] [--repeats 5] [--cases abcd]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def timed(*fns: Callable[[], object], repeats: int) -> list[float]:
    """Median wall time of each function; the functions alternate run by run, so load from other processes
    hits them alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fair on a busy machine)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default="abcd",
                        help="which cases to run, as letters (default abcd; e.g. --cases a for MusicGen alone)")
    args = parser.parse_args()
    if not args.cases or set(args.cases) - set("abcd"):
        parser.error(f"--cases {args.cases!r}: pass letters from 'abcd', e.g. --cases ab")
    cases = set(args.cases)
    torch.set_num_threads(args.threads)

    from diffusers import DiffusionPipeline
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    import aigc
    from aigc.sampling import generators, randn
    from aigc.testing import tiny_musicgen, tiny_text_to_video

    print(f"torch threads={args.threads}, median of {args.repeats} runs after one warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_musicgen(Path(tmp) / "musicgen", max_new_tokens=64)
        gen = aigc.load("audio", path, device="cpu")
        model = MusicgenForConditionalGeneration.from_pretrained(path).eval()
        processor = AutoTokenizer.from_pretrained(path)
        prompt, seconds = "calm piano", 2.0
        tokens = int(seconds * model.config.audio_encoder.frame_rate)

        def direct() -> object:
            inputs = processor(text=[prompt], return_tensors="pt")
            torch.manual_seed(0)  # plain transformers samples from the global RNG
            with torch.inference_mode():
                return model.generate(**inputs, do_sample=True, top_k=250, guidance_scale=3.0, max_new_tokens=tokens)

        def via_aigc(n: int, watermark: bool | None = None) -> object:
            return gen.generate(prompt, seed=0, num_outputs=n, duration_s=seconds, guidance=3.0, progress=False,
                                watermark=watermark)

        if "a" in cases:
            d1, a1, bare = timed(direct, lambda: via_aigc(1), lambda: via_aigc(1, watermark=False),
                                 repeats=args.repeats)
            print(f"(a) MusicGen, one {seconds:.0f} s clip ({tokens} tokens): transformers {d1 * 1000:.0f} ms, "
                  f"aigc {a1 * 1000:.0f} ms -> overhead {(a1 / d1 - 1) * 100:+.1f}% (target <= +10%)")
            print(f"    the same without the audio watermark (watermark=False): aigc {bare * 1000:.0f} ms -> "
                  f"overhead {(bare / d1 - 1) * 100:+.1f}%; the watermark {(a1 - bare) * 1000:.1f} ms")
        if "b" in cases:
            a4, singles = timed(lambda: via_aigc(4), lambda: [via_aigc(1) for _ in range(4)], repeats=args.repeats)
            print(f"(b) MusicGen, 4 clips: one batch {a4 * 1000:.0f} ms, 4 single calls {singles * 1000:.0f} ms -> "
                  f"{singles / a4:.2f}x (target >= 1.5x)")

        if "c" in cases:
            vpath = tiny_text_to_video(Path(tmp) / "t2v", sample_size=32)
            vgen = aigc.load("video", vpath, device="cpu")
            pipe = DiffusionPipeline.from_pretrained(vpath)
            pipe.set_progress_bar_config(disable=True)
            frames, steps = 8, 10
            latent = (pipe.unet.config.in_channels, frames, 32, 32)

            def direct_video() -> object:
                with torch.inference_mode():
                    return pipe(prompt, num_frames=frames, num_inference_steps=steps, generator=generators([0]),
                                latents=randn(latent, [0]), output_type="np").frames

            def aigc_video() -> object:
                return vgen.generate(prompt, seed=0, num_frames=frames, steps=steps, progress=False).videos

            dv, av = timed(direct_video, aigc_video, repeats=args.repeats)
            shape = "x".join(map(str, aigc_video()[0].shape[1:3]))  # type: ignore[index]
            print(f"(c) ModelScope text-to-video, {frames} frames of {shape}, {steps} steps: diffusers {dv * 1000:.0f} "
                  f"ms, aigc {av * 1000:.0f} ms -> overhead {(av / dv - 1) * 100:+.1f}% (target <= +5%)")

    if "d" in cases:
        speaker = aigc.load("audio")
        batch, one = timed(lambda: speaker.generate("say seven", seed=0, num_outputs=16, progress=False),
                           lambda: [speaker.generate("say seven", seed=s, progress=False) for s in range(16)],
                           repeats=args.repeats)
        print(f"(d) embedded word speaker: {16 / batch:.0f} clips/s in one call of 16, {16 / one:.0f} clips/s "
              f"in single calls ({one / batch:.2f}x)")


if __name__ == "__main__":
    main()
