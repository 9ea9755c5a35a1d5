"""aigc's invisible watermarks: each carries a short key that finds the output's record in the local store.

- :mod:`aigc.watermark.image`: images and video frames (dither modulation of low-frequency DCT projections on a
  fixed 32x32 grid; survives JPEG quality 75 after a 0.5x resize from 64 pixels a side);
- :mod:`aigc.watermark.audio`: audio (dither modulation of band energies analysed at 16 kHz; survives
  resampling and Ogg Vorbis);
- text: :mod:`aigc.sampling.watermark` (tournament sampling in aigc's own sampling core).

``Request.watermark`` decides where they go (on by default where cheap and robust; see
``docs/concepts/provenance.md``); :func:`aigc.verify` reads them back. The layouts are public constants: anyone can
read (and forge) these marks. They are provenance aids -- "this came from aigc, here is how it was made" --
not a security mechanism; the signed C2PA manifest is the part that proves who made a file.

Example:
    >>> from PIL import Image
    >>> from aigc.watermark import image
    >>> image.detect(image.embed(Image.new("RGB", (96, 64), (200, 90, 40)), "12345678")).key
    '12345678'
"""

from aigc.watermark._payload import BITS, PRESENT_AT, Detection, key_bits, sample_key

__all__ = ["BITS", "PRESENT_AT", "Detection", "key_bits", "sample_key"]
