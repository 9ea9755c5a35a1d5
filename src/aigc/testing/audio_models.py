"""Tiny random text-to-speech / text-to-audio models, saved to a directory, for tests that load them for real.

Every builder is deterministic (same ``seed``, same weights), offline (tokenizers are built in code, no hub),
and fast on a CPU. Weights are drawn inside ``torch.random.fork_rng`` so the caller's global RNG is left alone.

- :func:`tiny_vits`: a VITS / MMS-TTS model (``VitsModel`` + ``VitsTokenizer``), optionally multi-speaker;
- :func:`tiny_speecht5`: ``SpeechT5ForTextToSpeech`` with its HiFi-GAN vocoder in ``path/"vocoder"`` and two
  speaker x-vectors in ``path/"speakers"``;
- :func:`tiny_musicgen`: ``MusicgenForConditionalGeneration`` (T5 text encoder, EnCodec, 2-codebook decoder);
- :func:`tiny_fastspeech2`: ``FastSpeech2ConformerWithHifiGan`` (the transformers backend's generic path);
- :func:`tiny_audioldm`: a diffusers ``AudioLDMPipeline`` (CLAP text encoder, UNet, mel VAE, HiFi-GAN vocoder);
- :func:`tiny_audioldm2`: a diffusers ``AudioLDM2Pipeline`` (CLAP + T5 encoders, GPT-2, AudioLDM 2 UNet);
- :func:`tiny_stable_audio`: a diffusers ``StableAudioPipeline`` (T5, DiT, Oobleck VAE; stereo).

Example:
    >>> from aigc.testing.audio_models import tiny_vits
    >>> path = tiny_vits(tmp_path / "vits")  # doctest: +SKIP
    >>> aigc.load("audio", path).generate("hello", seed=0).waveform.shape  # doctest: +SKIP
    (1, 2304)
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

from aigc.testing.factories import new_model_dir

__all__ = [
    "tiny_audioldm", "tiny_audioldm2", "tiny_fastspeech2", "tiny_musicgen", "tiny_speecht5", "tiny_stable_audio",
    "tiny_vits",
]

_CHARS = string.ascii_lowercase + " '.,?!-"
_CORPUS = [
    "hello world, how are you today?",
    "the quick brown fox jumps over the lazy dog.",
    "a calm piano melody with soft drums",
    "rain falling on a tin roof, then thunder",
    "say seven. say eight! one two three",
]


def _seeded(seed: int) -> Any:
    """A context manager: the global RNG forked and seeded (weights drawn inside leave the caller's RNG alone)."""
    import torch

    class _Ctx:
        def __enter__(self) -> None:
            self._fork = torch.random.fork_rng(devices=[])
            self._fork.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc: object) -> None:
            self._fork.__exit__(None, None, None)

    return _Ctx()


def _roberta_tokenizer() -> Any:
    """A byte-level BPE ``RobertaTokenizer`` (CLAP's) trained on a few sentences."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                            show_progress=False)
    bpe_model = json.loads(bpe._tokenizer.to_str())["model"]  # {"vocab": {...}, "merges": [[a, b], ...]}
    merges: Any = [tuple(m) for m in bpe_model["merges"]]  # the tokenizers library takes (a, b) pairs
    return RobertaTokenizer(vocab=bpe_model["vocab"], merges=merges, model_max_length=32)


def _t5_tokenizer() -> Any:
    """A character-level unigram ``T5Tokenizer`` (ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), no sentencepiece."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in _CHARS.replace(" ", "") + string.ascii_uppercase]
    vocab += [("\u2581" + c, -2.5) for c in string.ascii_letters]  # word-initial letters
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=32)


def tiny_vits(path: str | os.PathLike[str], *, seed: int = 0, speakers: int = 2, sampling_rate: int = 16000) -> Path:
    """A random VITS (MMS-TTS architecture) with a character ``VitsTokenizer``, saved to ``path``.

    Args:
        speakers: ``num_speakers``; with more than one, ``voice=0 .. speakers-1`` picks the speaker.
        sampling_rate: recorded in the config; output has 16 samples per spectrogram frame.
    """
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    out = new_model_dir(path)
    vocab = {"<pad>": 0, "<unk>": 1}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = VitsTokenizer(vocab_file=os.fspath(out / "vocab.json"), phonemize=False, add_blank=True,
                              normalize=True)
    config = VitsConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32, flow_size=16,
        spectrogram_bins=16, upsample_initial_channel=16, upsample_rates=[8, 2], upsample_kernel_sizes=[16, 4],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], duration_predictor_num_flows=2,
        duration_predictor_filter_channels=16, prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2, depth_separable_num_layers=2, num_speakers=speakers,
        speaker_embedding_size=16 if speakers > 1 else 0, sampling_rate=sampling_rate, pad_token_id=0,
    )
    with _seeded(seed):
        model: Any = VitsModel(config)
    model.eval()
    model.save_pretrained(os.fspath(out))
    tokenizer.save_pretrained(os.fspath(out))
    return out


def _char_tokenizer(out: Path, *, specials: list[str], eos: str | None) -> Any:
    """A character-level ``PreTrainedTokenizerFast`` (``tokenizers`` library; no sentencepiece needed)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    if eos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, vocab[eos])])
    named = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, **{k: v for k, v in named.items() if v in vocab})
    fast.save_pretrained(os.fspath(out))
    return fast


def tiny_speecht5(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random ``SpeechT5ForTextToSpeech`` saved to ``path``, its ``SpeechT5HifiGan`` vocoder to
    ``path/"vocoder"``, and two speaker x-vectors to ``path/"speakers"/{a,b}.npy``.

    The tokenizer is character-level, built with the ``tokenizers`` library (real SpeechT5 checkpoints ship a
    sentencepiece model, which needs the ``sentencepiece`` package); token ids follow SpeechT5's
    (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2 appended, ``<unk>`` 3). The stop head never fires, so an utterance
    runs to SpeechT5's length limit: ``maxlenratio`` (load option) x input tokens / 2 steps of 2 mel frames,
    16 samples per frame (load with ``maxlenratio=2`` for short, fast tests).
    """
    import numpy as np
    import torch
    from transformers import SpeechT5Config, SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5HifiGanConfig

    out = new_model_dir(path)
    tokenizer = _char_tokenizer(out, specials=["<s>", "<pad>", "</s>", "<unk>"], eos="</s>")
    config = SpeechT5Config(
        vocab_size=len(tokenizer), hidden_size=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=8,
        speech_decoder_prenet_units=16, speech_decoder_postnet_units=16, speech_decoder_postnet_layers=2,
        speaker_embedding_dim=16, max_speech_positions=256, max_text_positions=128, encoder_max_relative_position=16,
        reduction_factor=2,
    )
    vocoder_config = SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    )
    with _seeded(seed):
        model: Any = SpeechT5ForTextToSpeech(config)
        vocoder: Any = SpeechT5HifiGan(vocoder_config)
        with torch.no_grad():  # never predict "stop": generation runs to the maxlenratio limit, a known length
            model.speech_decoder_postnet.prob_out.weight.zero_()
            model.speech_decoder_postnet.prob_out.bias.fill_(-10.0)
        voices = np.random.default_rng(seed).standard_normal((2, 16)).astype(np.float32)
    model.eval()
    vocoder.eval()
    model.save_pretrained(os.fspath(out))
    vocoder.save_pretrained(os.fspath(out / "vocoder"))
    (out / "speakers").mkdir(exist_ok=True)
    for name, vec in zip("ab", voices, strict=True):
        np.save(out / "speakers" / f"{name}.npy", vec)
    return out


def tiny_musicgen(path: str | os.PathLike[str], *, seed: int = 0, max_new_tokens: int = 8) -> Path:
    """A random ``MusicgenForConditionalGeneration`` (2 codebooks, EnCodec at 16 kHz / 32 frames per second)
    with a byte-level BPE tokenizer, saved to ``path``; its generation config asks for ``max_new_tokens``."""
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    from aigc.testing.factories import tiny_tokenizer

    out = Path(path)
    tokenizer = tiny_tokenizer(out)
    text = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=32, num_layers=2, num_heads=4, pad_token_id=0,
        eos_token_id=1)
    audio = EncodecConfig(
        sampling_rate=16000, hidden_size=16, num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 4, 4, 4],
        codebook_size=16, num_lstm_layers=1, target_bandwidths=[0.5], compress=2, kernel_size=3, last_kernel_size=3,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32, num_codebooks=2,
        max_position_embeddings=128, pad_token_id=16, bos_token_id=16, initializer_factor=0.3)
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    with _seeded(seed):
        model: Any = MusicgenForConditionalGeneration(config)
        with torch.no_grad():  # EnCodec's codebooks start at zero (a trained model loads them): make codes audible
            for layer in model.audio_encoder.quantizer.layers:
                layer.codebook.embed.normal_()
    model.eval()
    gen = model.generation_config
    gen.max_new_tokens, gen.do_sample, gen.top_k, gen.guidance_scale = max_new_tokens, True, 8, 3.0
    gen.pad_token_id = gen.decoder_start_token_id = 16
    model.save_pretrained(os.fspath(out))
    return out


def tiny_audioldm(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random diffusers ``AudioLDMPipeline`` saved to ``path``.

    Mel VAE with scale factor 2, 8 mel bins, a HiFi-GAN vocoder upsampling 16x at 16 kHz: one second of audio
    is 1000 mel frames; the default length (``sample_size`` 8 latents) is 16 frames = 256 samples.
    """
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    out = new_model_dir(path)
    tokenizer = _roberta_tokenizer()
    with _seeded(seed):
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=(8, 16), class_embed_type="simple_projection", projection_class_embeddings_input_dim=16,
            class_embeddings_concat=True, norm_num_groups=4, attention_head_dim=4,
        )
        vae = AutoencoderKL(
            block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4, norm_num_groups=4,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        )
        text_encoder = ClapTextModelWithProjection(ClapTextConfig(
            bos_token_id=0, eos_token_id=2, pad_token_id=1, vocab_size=len(tokenizer), hidden_size=16,
            intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, projection_dim=16,
            max_position_embeddings=40,
        ))
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4],
            upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
        ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            vocoder=vocoder)
    pipe.save_pretrained(os.fspath(out))
    return out


def tiny_stable_audio(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random diffusers ``StableAudioPipeline`` saved to ``path``: stereo at 1024 Hz, 8 samples per latent
    frame, 16 latent frames, so at most 0.125 s (the duration conditioning spans 0 .. 1 s).

    Its scheduler is ``EDMDPMSolverMultistepScheduler`` (v-prediction): Stable Audio's own
    ``CosineDPMSolverMultistepScheduler`` needs the ``torchsde`` package.
    """
    from diffusers import AutoencoderOobleck, EDMDPMSolverMultistepScheduler, StableAudioDiTModel, StableAudioPipeline
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = _t5_tokenizer()
    with _seeded(seed):
        transformer = StableAudioDiTModel(
            sample_size=16, in_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=2,
            num_key_value_attention_heads=1, out_channels=4, cross_attention_dim=8, time_proj_dim=8,
            global_states_input_dim=8, cross_attention_input_dim=4)
        vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[2, 4], channel_multiples=[2, 4],
                                 decoder_channels=6, decoder_input_channels=4, audio_channels=2, sampling_rate=1024)
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=8, d_kv=4, d_ff=16, num_layers=2, num_heads=2, pad_token_id=0,
            eos_token_id=1))
        projection = StableAudioProjectionModel(text_encoder_dim=8, conditioning_dim=4, min_value=0, max_value=1)
    scheduler = EDMDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                               sigma_schedule="exponential")
    pipe = StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=tokenizer,
                               transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(os.fspath(path))
    return Path(path)


def tiny_fastspeech2(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random ``FastSpeech2ConformerWithHifiGan`` (text to waveform in one forward pass, no randomness at
    inference) with a character tokenizer, saved to ``path``: the transformers audio backend's generic path.

    Like the real checkpoint, its config names no sample rate: load it with ``sample_rate=16000``."""
    from transformers import (
        FastSpeech2ConformerConfig,
        FastSpeech2ConformerHifiGanConfig,
        FastSpeech2ConformerWithHifiGan,
        FastSpeech2ConformerWithHifiGanConfig,
    )

    out = new_model_dir(path)
    tokenizer = _char_tokenizer(out, specials=["<blank>", "<unk>", "<sos/eos>"], eos=None)
    model_config = FastSpeech2ConformerConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_mel_bins=8, encoder_layers=1, decoder_layers=1,
        encoder_linear_units=16, decoder_linear_units=16, speech_decoder_postnet_layers=1,
        speech_decoder_postnet_units=8, duration_predictor_channels=8, energy_predictor_channels=8,
        pitch_predictor_channels=8, pitch_predictor_layers=1, encoder_kernel_size=3, decoder_kernel_size=3)
    vocoder_config = FastSpeech2ConformerHifiGanConfig(
        model_in_dim=8, upsample_initial_channel=16, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])
    with _seeded(seed):
        model: Any = FastSpeech2ConformerWithHifiGan(FastSpeech2ConformerWithHifiGanConfig(
            model_config=model_config.to_dict(), vocoder_config=vocoder_config.to_dict()))
    model.eval()
    model.save_pretrained(os.fspath(out))
    return out


def tiny_audioldm2(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random diffusers ``AudioLDM2Pipeline`` saved to ``path``: CLAP (text and audio branches) and T5 text
    encoders, a GPT-2 that generates 4 conditioning vectors, the two-cross-attention UNet, a mel VAE and a
    HiFi-GAN vocoder with the same geometry as :func:`tiny_audioldm` (default 256 samples at 16 kHz)."""
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    tokenizer, tokenizer_2 = _roberta_tokenizer(), _t5_tokenizer()
    with _seeded(seed):
        unet = AudioLDM2UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=8, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=([None, 16, 32], [None, 16, 32]),
            attention_head_dim=4)
        vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=4,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            latent_channels=4)
        text_config = ClapTextConfig(
            bos_token_id=0, eos_token_id=2, pad_token_id=1, vocab_size=len(tokenizer), hidden_size=8,
            intermediate_size=16, num_attention_heads=1, num_hidden_layers=1, projection_dim=8,
            max_position_embeddings=40)
        audio_config = ClapAudioConfig(
            spec_size=8, window_size=4, num_mel_bins=8, depths=[1, 1], num_attention_heads=[1, 1],
            num_hidden_layers=1, hidden_size=16, projection_dim=8, patch_size=2, patch_stride=2,
            patch_embed_input_channels=4)
        clap = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                    projection_dim=16))
        t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_ff=32, d_kv=8, num_heads=2,
                                     num_layers=2, pad_token_id=0, eos_token_id=1))
        gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=64, n_positions=99))
        gpt2.config.max_new_tokens = 4  # read by the pipeline
        projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4],
            upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
            normalize_before=False))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    pipe = AudioLDM2Pipeline(
        vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=projection, language_model=gpt2,
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, feature_extractor=ClapFeatureExtractor(feature_size=8),
        unet=unet, scheduler=scheduler, vocoder=vocoder)
    pipe.save_pretrained(os.fspath(path))
    return Path(path)
