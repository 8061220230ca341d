// libFuzzer target: arbitrary bytes into PNG/JPEG decoding (Debian's stb) and the preprocessing
// that follows it in the loaders (alpha compositing, ADM centre crop).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int channels[] = {1, 3, 4};
  const int c = channels[size % 3];
  try {
    auto img = ctfgen::io::decode_image(data, size, "fuzz.img", c);
    if (c == 4) img = ctfgen::io::composite_alpha(img);
    if (img.size(0) * img.size(1) <= 256 * 256) ctfgen::io::center_crop_adm(img, 8);
  } catch (const ctfgen::Error&) {
  }
  return 0;
}
