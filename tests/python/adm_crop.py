"""Oracle for ctfgen::io::center_crop_adm: LlamaGen/ADM centre crop with PIL.
Usage: adm_crop.py IN.png OUT.png SIZE"""
import sys

import numpy as np
from PIL import Image


def center_crop(img, size):
    while min(*img.size) >= 2 * size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.array(img)
    top = (arr.shape[0] - size) // 2
    left = (arr.shape[1] - size) // 2
    return Image.fromarray(arr[top:top + size, left:left + size])


if __name__ == "__main__":
    src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    center_crop(Image.open(src).convert("RGB"), size).save(dst)
