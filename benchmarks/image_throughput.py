"""Image throughput: aigc's diffusers backend against calling diffusers directly, on the same pipeline.

A random Stable Diffusion pipeline (tiny but not trivial: UNet widths 32/64/64, 32x32 latents -> 64x64
images, CLIP text encoder of width 64) is built in code and saved with ``save_pretrained``; both sides
load it from that directory and run the same prompt, seed, scheduler and steps.

Prints:
  (a) aigc overhead per image vs ``pipe(...)`` called directly (target: <= 5 %);
  (b) a batch of 4 in one ``generate`` vs 4 single calls (target: >= 1.5x);
  (c) an ancestral scheduler (Euler a, noise at every step): aigc, whose step noise comes from a stream of its
      own (``step_generators``), vs diffusers called with the version-1 wiring (generators seeded like x_T):
      the cost of the separate stream (target: < 1 %). Alternating runs, median.

Run:  python benchmarks/image_throughput.py [--threads 1] [--steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import string
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def build_pipeline(path: Path) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
            norm_num_groups=8, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4,
                            norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 2,
                            up_block_types=["UpDecoderBlock2D"] * 2, sample_size=64)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                            num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=32,
                                            bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(path)


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fair on a busy machine)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import diffusers

    import aigc
    from aigc.sampling import generators, randn

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sd"
        build_pipeline(path)
        gen = aigc.load("image", path, device="cpu")
        pipe = diffusers.AutoPipelineForText2Image.from_pretrained(path, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        prompt, steps = "an ankle boot on a table", args.steps
        params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
        print(f"pipeline: {params / 1e6:.2f}M parameters, 64x64 images, {steps} DDIM steps, "
              f"torch threads={args.threads}, median of {args.repeats}")

        def direct(n: int) -> object:
            seeds = list(range(n))
            with torch.inference_mode():
                return pipe([prompt] * n, num_inference_steps=steps, generator=generators(seeds),
                            latents=randn((4, 32, 32), seeds), output_type="pil").images

        def via_aigc(n: int) -> object:
            return gen.generate(prompt, seed=0, num_outputs=n, steps=steps, progress=False).images

        d1 = timed(lambda: direct(1), args.repeats)
        a1 = timed(lambda: via_aigc(1), args.repeats)
        print(f"(a) one image: diffusers {d1 * 1000:.1f} ms, aigc {a1 * 1000:.1f} ms -> overhead "
              f"{(a1 / d1 - 1) * 100:+.1f}% (target <= +5%)")
        a4 = timed(lambda: via_aigc(4), args.repeats)
        singles = timed(lambda: [via_aigc(1) for _ in range(4)], args.repeats)
        print(f"(b) 4 images: one batch {a4 * 1000:.1f} ms, 4 single calls {singles * 1000:.1f} ms -> "
              f"{singles / a4:.2f}x (target >= 1.5x)")

        euler_a = diffusers.EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)

        def direct_v1() -> object:
            pipe.scheduler = euler_a
            with torch.inference_mode():
                return pipe([prompt], num_inference_steps=steps, generator=generators([0]),
                            latents=randn((4, 32, 32), [0]), output_type="pil").images

        def aigc_v2() -> object:
            return gen.generate(prompt, seed=0, steps=steps, scheduler="euler_a", progress=False).images

        direct_v1(), aigc_v2()
        times: list[list[float]] = [[], []]
        for _ in range(args.repeats * 2):
            for i, fn in enumerate((direct_v1, aigc_v2)):
                start = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - start)
        dv, av = statistics.median(times[0]), statistics.median(times[1])
        print(f"(c) Euler a, one image: diffusers with x_T's generators {dv * 1000:.1f} ms, aigc with the step-noise "
              f"stream {av * 1000:.1f} ms -> {(av / dv - 1) * 100:+.1f}% (aigc's overhead of (a) included; "
              "target: the same as (a) within 1 %)")


if __name__ == "__main__":
    main()
