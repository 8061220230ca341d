// Datasets held fully in memory as float images in [-1, 1].
//
//   fashion-mnist  IDX files from Debian's dataset-fashion-mnist (default
//                  /usr/share/datasets/fashion-mnist); 10 classes; native 1 x 28 x 28;
//                  image_size > 28 pads symmetrically with the background value -1
//                  (32 = 2 pixels on every side); image_size < 28 is an error.
//   imagefolder    <path>/<class>/<image>.{png,jpg,jpeg} (classes = sorted sub-directories,
//                  files sorted by name), or <path>/train/<class>/... and <path>/test/<class>/...
//                  when both exist. RGB (grey replicated; transparent pixels composited onto
//                  alpha_background), ADM centre crop to image_size (0 = keep native size; then
//                  all images must share one size).
//   emoji          emoji-datasource-google@16.0.0 installed by scripts/fetch_emoji.sh (default
//                  path data/emoji); img/google/64/ PNGs, classes = emoji.json categories except
//                  "Component" (9, sorted by name); RGBA composited onto alpha_background;
//                  64 x 64 native.
// alpha_background: "white" (the default: what an image viewer shows for most icon sets, and the
// emoji set's own look), "black", or "R,G,B" (0-255 each); the rule is io::composite_alpha's.
//
// Without explicit train/ and test/ folders the held-out split is deterministic and independent
// of directory order: within each class, items are ordered by FNV-1a 64 of
// "<split_seed>/<class name>/<file name>" and the first round(test_fraction * n) are "test".
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ctfgen::data {

struct Dataset {
  at::Tensor images;                     // [N, C, H, W] float32 in [-1, 1]
  at::Tensor labels;                     // [N] int64 in [0, class_names.size())
  std::vector<std::string> class_names;  // index = label
  std::string name;                      // dataset name ("fashion-mnist", ...)
  int64_t skipped = 0;                   // unreadable images skipped (skip_bad only)
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

struct DatasetConfig {
  std::string name = "fashion-mnist";  // "fashion-mnist" | "imagefolder" | "emoji"
  std::string path;                    // "" = default location (required for imagefolder)
  std::string split = "train";         // "train" | "test"
  int64_t image_size = 0;              // 0 = native; fashion-mnist: >= 28, padded with -1
  bool skip_bad = false;               // skip (and count) unreadable images instead of failing
  int64_t limit = 0;                   // keep at most this many images (first in order); 0 = all
  double test_fraction = 0.1;          // held-out share per class when there are no split folders
  uint64_t split_seed = 0;             // seed of the deterministic held-out split
  std::string alpha_background = "white";  // transparency: "white" | "black" | "R,G,B"

  nlohmann::json to_json() const;
  static DatasetConfig from_json(const nlohmann::json& j);  // does not validate
  void validate() const;  // throws UsageError naming the field and value
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("name", self.name);
    visit("path", self.path);
    visit("split", self.split);
    visit("image_size", self.image_size);
    visit("skip_bad", self.skip_bad);
    visit("limit", self.limit);
    visit("test_fraction", self.test_fraction);
    visit("split_seed", self.split_seed);
    visit("alpha_background", self.alpha_background);
  }
};

/// The RGB colour of an alpha_background value; throws UsageError naming the field and value.
std::array<uint8_t, 3> parse_alpha_background(const std::string& value);

/// Loads the whole split into memory (validates the config first).
Dataset load_dataset(const DatasetConfig& cfg);

/// The default location of a dataset when cfg.path is empty.
std::string default_dataset_path(const std::string& name);

/// The Fashion-MNIST class names, in label order.
const std::vector<std::string>& fashion_mnist_classes();

/// Rows of t selected by idx: t [N, ...], idx [M] int64 in [0, N) -> [M, ...].
at::Tensor take(const at::Tensor& t, const at::Tensor& idx);

/// Flips each image of batch [B, C, H, W] horizontally with probability 0.5 (draws from gen).
at::Tensor random_hflip(const at::Tensor& batch, at::Generator& gen);

/// The deterministic held-out rule (see above): true when `file` of `class_name` is in the test
/// split. Exposed for tests; `items` are the file names of one class.
std::vector<bool> held_out_mask(const std::vector<std::string>& items, const std::string& class_name,
                                double test_fraction, uint64_t seed);

}  // namespace ctfgen::data
