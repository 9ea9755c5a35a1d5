"""Tiny random models, saved to a directory with ``save_pretrained``, for tests that load them for real.

Every factory is deterministic (same ``seed``, same weights), offline, and fast on a CPU. Weights are
drawn inside ``torch.random.fork_rng`` so the caller's global RNG state is left as it was.

Example:
    >>> from aigc.testing import tiny_gpt2
    >>> path = tiny_gpt2(tmp_path / "gpt2")  # doctest: +SKIP
    >>> aigc.load("text", path).generate("Hello", max_new_tokens=5, seed=0).text  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE", "tiny_bert", "tiny_bert2bert", "tiny_gan", "tiny_gpt2", "tiny_llama", "tiny_stable_diffusion",
    "tiny_t5", "tiny_tokenizer", "tiny_vae", "tiny_wordpiece_tokenizer",
]

#: A minimal chat template (Jinja), so chat prompts can be tested on tiny models.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# English and Chinese, so byte-level BPE leaves some Chinese characters split across several tokens.
_CORPUS = [
    "Once upon a time there was a little robot who liked to read stories.",
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.",
    "To be, or not to be, that is the question.",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.",
    "今天天气真好，我想去公园散步。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "Hello world! Hello again, world. How are you today?",
]

PAD, EOS, BOS = "<pad>", "</s>", "<s>"  # ids 0, 1, 2


def tiny_tokenizer(path: str | os.PathLike[str] | None = None, *, vocab_size: int = 320) -> Any:
    """A byte-level BPE tokenizer trained on a few English and Chinese sentences.

    Special tokens: ``<pad>`` = 0, ``</s>`` (EOS) = 1, ``<s>`` (BOS) = 2; a chat template is set.
    Returns a ``PreTrainedTokenizerFast``, saved to ``path`` when given.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=BOS)
    fast.chat_template = CHAT_TEMPLATE
    if path is not None:
        fast.save_pretrained(os.fspath(path))
    return fast


def new_model_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path``, created with its parents if missing: where a factory saves its model.

    Example:
        >>> import tempfile
        >>> new_model_dir(Path(tempfile.mkdtemp()) / "a" / "b").is_dir()
        True
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save(model_cls: Any, config: Any, path: str | os.PathLike[str], seed: int) -> Path:
    import torch

    out = Path(path)
    tokenizer = tiny_tokenizer(out)
    config.vocab_size = len(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.eval()
    model.save_pretrained(os.fspath(out))  # safetensors by default
    return out


def tiny_gpt2(path: str | os.PathLike[str], *, seed: int = 0, layers: int = 2, width: int = 32,
              positions: int = 128) -> Path:
    """A random GPT-2 (``GPT2LMHeadModel``) with its tokenizer, saved to ``path``; returns ``path``.

    The weights are drawn with a large initializer range so that the next-token distributions are
    peaked, as in a trained model (greedy and low-temperature outputs then differ from uniform noise).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=width, n_layer=layers, n_head=2, n_positions=positions, initializer_range=0.3,
                        pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return _save(GPT2LMHeadModel, config, path, seed)


def tiny_llama(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random Llama-architecture model (rotary positions, grouped-query attention) saved to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.3,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=False)
    return _save(LlamaForCausalLM, config, path, seed)


def tiny_t5(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random T5 (encoder-decoder) saved to ``path``; decoding starts from ``<pad>`` as in T5."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(  # type: ignore[call-arg]  # T5Config takes generation ids through **kwargs
        d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                      initializer_factor=3.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return _save(T5ForConditionalGeneration, config, path, seed)


BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0-4, as in BERT's own vocabularies


def tiny_wordpiece_tokenizer(path: str | os.PathLike[str] | None = None, *, mask_token: str = "[MASK]") -> Any:
    """A BERT WordPiece tokenizer (``BertTokenizer``, lower-cased) over the characters and words of a few
    English and Chinese sentences: ``[PAD]`` = 0, ``[UNK]`` = 1, ``[CLS]`` = 2, ``[SEP]`` = 3, ``[MASK]`` = 4 (or
    ``mask_token``, e.g. RoBERTa's ``"<mask>"``), then every character of the sentences, each letter again as a
    ``##`` continuation, and their English words. Chinese is split into single characters, as
    ``bert-base-chinese`` does. Saved to ``path`` when given.
    """
    import re

    from transformers import BertTokenizer  # tokenizers' WordPiece (BertTokenizerFast before transformers 5)

    text = " ".join(_CORPUS).lower()
    chars = sorted({c for c in text if not c.isspace()})
    words = sorted({w for w in re.findall(r"[a-z]+", text) if len(w) > 1})
    letters = [c for c in chars if "a" <= c <= "z"]
    specials = [mask_token if t == "[MASK]" else t for t in BERT_SPECIALS]
    vocab = [*specials, *chars, *(f"##{c}" for c in letters), *words]
    tok = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True, mask_token=mask_token)
    if path is not None:
        tok.save_pretrained(os.fspath(path))
    return tok


def _bert_config(vocab_size: int, *, initializer_range: float = 0.3, **extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, initializer_range=initializer_range,
                      pad_token_id=0, **extra)


def tiny_bert(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random BERT masked language model (``BertForMaskedLM``) with its WordPiece tokenizer
    (:func:`tiny_wordpiece_tokenizer`), saved to ``path``; returns ``path``.

    Example:
        >>> res = aigc.generate("text", "今天天气真[MASK]。", model=tiny_bert(tmp_path / "bert"))  # doctest: +SKIP
    """
    import torch
    from transformers import BertForMaskedLM

    out = Path(path)
    tok = tiny_wordpiece_tokenizer(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(_bert_config(len(tok)))
    model.save_pretrained(os.fspath(out))  # safetensors by default
    return out


def tiny_bert2bert(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random BERT2BERT encoder-decoder (``EncoderDecoderModel``: a ``BertModel`` encoder, a ``BertLMHeadModel``
    decoder with cross-attention) with its WordPiece tokenizer, saved to ``path``; returns ``path``.

    Decoding starts from ``[CLS]`` and ends at ``[SEP]``, the BERT2BERT convention (Rothe et al. 2020), written
    into the config and the generation config as transformers' documentation does.
    """
    import torch
    from transformers import EncoderDecoderConfig, EncoderDecoderModel

    out = Path(path)
    tok = tiny_wordpiece_tokenizer(out)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        _bert_config(len(tok)),
        # a smaller decoder initialisation: greedy outputs then vary along the sequence and with the prompt
        _bert_config(len(tok), initializer_range=0.1, is_decoder=True, add_cross_attention=True))
    ids = {"decoder_start_token_id": tok.cls_token_id, "eos_token_id": tok.sep_token_id,
           "pad_token_id": tok.pad_token_id}
    for name, value in ids.items():
        setattr(config, name, value)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EncoderDecoderModel(config=config)
    for name, value in ids.items():
        setattr(model.generation_config, name, value)
    model.save_pretrained(os.fspath(out))
    return out


def tiny_stable_diffusion(path: str | os.PathLike[str], *, seed: int = 0, sample_size: int = 16,
                          safety_checker: bool | None = None) -> Path:
    """A random Stable Diffusion pipeline (UNet, VAE, CLIP text encoder and tokenizer, DDIM), saved to ``path``.

    The UNet works on ``sample_size`` latents and the VAE has a scale factor of 2, so images are
    ``2 * sample_size`` pixels square (32x32 by default): fast on a CPU, the real code path throughout.
    ``safety_checker``: ``None`` for none (the default); ``True`` adds a tiny random ``StableDiffusionSafetyChecker``
    (and its CLIP image processor) whose thresholds flag every image, ``False`` one that flags none -- the real
    checker code either way.
    """
    import string

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, sample_size=sample_size, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, norm_num_groups=4,
            attention_head_dim=4,
        )
        vae = AutoencoderKL(
            block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
            sample_size=2 * sample_size,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    checker = extractor = None
    if safety_checker is not None:
        checker, extractor = _tiny_safety_checker(seed, flag_all=safety_checker)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=checker, feature_extractor=extractor,
                                   requires_safety_checker=False)
    pipe.save_pretrained(os.fspath(path))
    return Path(path)


def _tiny_safety_checker(seed: int, *, flag_all: bool) -> tuple[Any, Any]:
    """A random StableDiffusionSafetyChecker (a 2-layer CLIP vision tower) whose concept thresholds flag every
    image (``flag_all``) or none: a cosine distance is in [-1, 1], the thresholds -2 or 2."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": 64, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        threshold = -2.0 if flag_all else 2.0
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


_TINY_CLASSES = ("circle", "square", "cross")


def tiny_gan(path: str | os.PathLike[str], *, seed: int = 0, resolution: int = 16, num_classes: int = 3) -> Path:
    """A random class-conditional StyleGAN2-style generator in the ``gan`` backend's format, saved to ``path``.

    Classes are ``"circle"``, ``"square"`` and ``"cross"`` (the first ``num_classes``); ``w_avg`` holds the mean w
    of 256 random latents per class, as training would leave it; noise strengths are non-zero.
    """
    import torch

    from aigc.formats import classes, latent
    from aigc.models import StyleGANConfig, StyleGANGenerator

    levels = resolution.bit_length() - 2
    cfg = StyleGANConfig(resolution=resolution, widths=tuple(max(8, 32 >> i) for i in range(levels)), z_dim=16,
                         w_dim=32, mapping_layers=2, num_classes=num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = StyleGANGenerator(cfg)
        with torch.no_grad():
            for layer in net.synthesis.layers:
                layer.noise_strength.fill_(0.1)  # type: ignore[operator]
            for c in range(max(num_classes, 1)):
                labels = torch.full((256,), c) if num_classes else None
                net.w_avg[c] = net.mapping(torch.randn(256, cfg.z_dim), labels).mean(0)
    return latent.save(path, net, classes=classes.entries(_TINY_CLASSES[:num_classes]), defaults={"truncation": 0.7})


def tiny_vae(path: str | os.PathLike[str], *, seed: int = 0, resolution: int = 16, num_classes: int = 3) -> Path:
    """A random class-conditional convolutional VAE in the ``vae`` backend's format, saved to ``path``."""
    import torch

    from aigc.formats import classes, latent
    from aigc.models import ConvVAE, VAEConfig

    cfg = VAEConfig(resolution=resolution, widths=(8, 16), latent_dim=8, num_classes=num_classes, class_dim=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ConvVAE(cfg)
    return latent.save(path, net, classes=classes.entries(_TINY_CLASSES[:num_classes]), defaults={"truncation": 1.0})
