#include "data/dataset.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/shape.h"
#include "io/idx.h"
#include "io/image_io.h"

namespace ctfgen::data {
namespace {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kFashionSide = 28;
constexpr int64_t kMaxImageSize = 4096;

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_file(const stdfs::path& p) {
  const std::string ext = lower(p.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return stdfs::is_directory(p, ec);
}

// Sorted names of the entries of `dir` that are directories (dirs = true) or image files.
std::vector<std::string> list_sorted(const std::string& dir, bool dirs) {
  std::vector<std::string> out;
  std::error_code ec;
  stdfs::directory_iterator it(dir, ec), end;
  CTFGEN_CHECK(!ec, dir, ": cannot list directory (", ec.message(), ")");
  for (; it != end; it.increment(ec)) {
    CTFGEN_CHECK(!ec, dir, ": cannot list directory (", ec.message(), ")");
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code ec2;
    const bool d = it->is_directory(ec2);
    if (dirs ? d : (!d && is_image_file(it->path()))) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Item {
  std::string file;  // full path
  int64_t label;
};

// Interleaves per-class lists (class 0 item 0, class 1 item 0, ..., class 0 item 1, ...) so that
// `limit` keeps a class-balanced prefix.
std::vector<Item> interleave(const std::vector<std::vector<Item>>& per_class, int64_t limit) {
  std::vector<Item> out;
  size_t longest = 0;
  for (const auto& v : per_class) longest = std::max(longest, v.size());
  for (size_t i = 0; i < longest; ++i)
    for (const auto& v : per_class)
      if (i < v.size()) out.push_back(v[i]);
  if (limit > 0 && static_cast<int64_t>(out.size()) > limit) out.resize(static_cast<size_t>(limit));
  return out;
}

// Keeps the items of `names` (one class) that belong to cfg.split under the held-out rule.
std::vector<Item> select_split(const std::vector<std::string>& names, const std::string& dir,
                               const std::string& class_name, int64_t label, const DatasetConfig& cfg) {
  auto mask = held_out_mask(names, class_name, cfg.test_fraction, cfg.split_seed);
  const bool want_test = cfg.split == "test";
  std::vector<Item> out;
  for (size_t i = 0; i < names.size(); ++i)
    if (mask[i] == want_test) out.push_back({dir + "/" + names[i], label});
  return out;
}

// Decodes and preprocesses every item; failures throw or (skip_bad) are counted and logged.
// `prep` maps a decoded uint8 [H, W, C] image to uint8 [H', W', 3 or 1].
template <typename Prep>
void decode_all(const std::vector<Item>& items, int channels, const DatasetConfig& cfg, Prep prep,
                Dataset& ds) {
  std::vector<at::Tensor> imgs;
  std::vector<int64_t> labels;
  imgs.reserve(items.size());
  for (const auto& it : items) {
    at::Tensor hwc;
    try {
      hwc = prep(io::read_image(it.file, channels));
      if (!imgs.empty())
        CTFGEN_CHECK(hwc.sizes() == imgs.front().sizes(), it.file, ": image size ", shape_str(hwc.sizes()),
                     " differs from ", shape_str(imgs.front().sizes()),
                     " (set image_size to resize every image)");
    } catch (const Error& e) {
      if (!cfg.skip_bad) throw;
      ++ds.skipped;
      log::warn("skipping unreadable image: ", e.what());
      continue;
    }
    imgs.push_back(hwc);
    labels.push_back(it.label);
  }
  CTFGEN_CHECK(!imgs.empty(), "dataset ", cfg.name, " (", cfg.path.empty() ? default_dataset_path(cfg.name) : cfg.path,
               ", split ", cfg.split, "): no images", ds.skipped ? str_cat(" (", ds.skipped, " skipped)") : "");
  ds.images = io::from_uint8(torch::stack(imgs).permute({0, 3, 1, 2}).contiguous());
  ds.labels = torch::tensor(labels, torch::kLong);
}

Dataset load_fashion(const DatasetConfig& cfg, const std::string& dir) {
  const std::string prefix = cfg.split == "train" ? "train" : "t10k";
  auto pick = [&](const std::string& stem) {
    std::string gz = dir + "/" + stem + ".gz";
    return fs::exists(gz) ? gz : dir + "/" + stem;
  };
  const std::string img_path = pick(prefix + "-images-idx3-ubyte");
  const std::string lab_path = pick(prefix + "-labels-idx1-ubyte");
  auto imgs = io::load_idx(img_path);
  auto labs = io::load_idx(lab_path);
  CTFGEN_CHECK(imgs.dim() == 3 && imgs.size(1) == kFashionSide && imgs.size(2) == kFashionSide, img_path,
               ": expected images [N, 28, 28], got ", shape_str(imgs.sizes()));
  CTFGEN_CHECK(labs.dim() == 1 && labs.size(0) == imgs.size(0), lab_path, ": expected labels [",
               imgs.size(0), "], got ", shape_str(labs.sizes()));
  if (labs.numel() > 0)
    CTFGEN_CHECK(labs.max().item<int64_t>() < 10, lab_path, ": label ", labs.max().item<int64_t>(),
                 " is out of range 0..9");
  int64_t n = imgs.size(0);
  if (cfg.limit > 0) n = std::min(n, cfg.limit);
  Dataset ds;
  ds.images = io::from_uint8(imgs.narrow(0, 0, n)).unsqueeze(1);
  ds.labels = labs.narrow(0, 0, n).to(torch::kLong);
  if (cfg.image_size > kFashionSide) {
    const int64_t d = cfg.image_size - kFashionSide, lo = d / 2, hi = d - d / 2;
    ds.images = at::constant_pad_nd(ds.images, {lo, hi, lo, hi}, -1.0);
  }
  ds.class_names = fashion_mnist_classes();
  return ds;
}

Dataset load_imagefolder(const DatasetConfig& cfg, const std::string& root) {
  CTFGEN_CHECK(is_dir(root), root, ": imagefolder path is not a directory");
  const bool split_dirs = is_dir(root + "/train") && is_dir(root + "/test");
  Dataset ds;
  std::vector<std::vector<Item>> per_class;
  if (split_dirs) {
    ds.class_names = list_sorted(root + "/train", true);
    auto here = list_sorted(root + "/" + cfg.split, true);
    for (const auto& c : here)
      CTFGEN_CHECK(std::binary_search(ds.class_names.begin(), ds.class_names.end(), c), root, "/", cfg.split,
                   "/", c, ": class folder has no counterpart in ", root, "/train");
  } else {
    ds.class_names = list_sorted(root, true);
  }
  CTFGEN_CHECK(!ds.class_names.empty(), root, ": no class sub-directories found");
  for (size_t k = 0; k < ds.class_names.size(); ++k) {
    const std::string& cls = ds.class_names[k];
    const int64_t label = static_cast<int64_t>(k);
    if (split_dirs) {
      const std::string dir = root + "/" + cfg.split + "/" + cls;
      std::vector<Item> items;
      if (is_dir(dir))
        for (const auto& f : list_sorted(dir, false)) items.push_back({dir + "/" + f, label});
      per_class.push_back(std::move(items));
    } else {
      const std::string dir = root + "/" + cls;
      per_class.push_back(select_split(list_sorted(dir, false), dir, cls, label, cfg));
    }
  }
  auto items = interleave(per_class, cfg.limit);
  const auto background = parse_alpha_background(cfg.alpha_background);
  decode_all(items, 4, cfg,
             [&](const at::Tensor& rgba) {
               auto rgb = io::composite_alpha(rgba, background);
               return cfg.image_size > 0 ? io::center_crop_adm(rgb, cfg.image_size) : rgb;
             },
             ds);
  return ds;
}

std::string emoji_package_dir(const std::string& path) {
  for (const std::string& cand : {path + "/node_modules/emoji-datasource-google", path})
    if (fs::exists(cand + "/emoji.json")) return cand;
  throw Error(str_cat(path, ": emoji-datasource-google not found (no emoji.json here or under "
                            "node_modules/emoji-datasource-google); run scripts/fetch_emoji.sh ", path));
}

Dataset load_emoji(const DatasetConfig& cfg, const std::string& path) {
  const std::string pkg = emoji_package_dir(path);
  const std::string json_path = pkg + "/emoji.json";
  const json list = fs::read_json(json_path);
  CTFGEN_CHECK(list.is_array(), json_path, ": expected a JSON array of emoji records");
  std::map<std::string, std::vector<std::string>> by_category;
  for (const auto& e : list) {
    CTFGEN_CHECK(e.is_object() && e.contains("image") && e["image"].is_string() && e.contains("category") &&
                     e["category"].is_string(),
                 json_path, ": emoji record without string fields 'image' and 'category': ",
                 e.dump().substr(0, 200));
    if (e.contains("has_img_google") && e["has_img_google"].is_boolean() && !e["has_img_google"].get<bool>())
      continue;
    const std::string cat = e["category"].get<std::string>();
    if (cat == "Component") continue;
    const std::string image = e["image"].get<std::string>();
    CTFGEN_CHECK(image.find('/') == std::string::npos && image.find("..") == std::string::npos, json_path,
                 ": suspicious image name '", image, "'");
    by_category[cat].push_back(image);
  }
  Dataset ds;
  std::vector<std::vector<Item>> per_class;
  const std::string img_dir = pkg + "/img/google/64";
  for (auto& [cat, images] : by_category) {
    std::sort(images.begin(), images.end());
    images.erase(std::unique(images.begin(), images.end()), images.end());
    per_class.push_back(select_split(images, img_dir, cat, static_cast<int64_t>(ds.class_names.size()), cfg));
    ds.class_names.push_back(cat);
  }
  CTFGEN_CHECK(!ds.class_names.empty(), json_path, ": no emoji categories found");
  if (ds.class_names.size() != 9)
    log::warn(json_path, ": expected 9 emoji categories, found ", ds.class_names.size());
  auto items = interleave(per_class, cfg.limit);
  const auto background = parse_alpha_background(cfg.alpha_background);
  decode_all(items, 4, cfg,
             [&](const at::Tensor& rgba) {
               auto rgb = io::composite_alpha(rgba, background);
               return cfg.image_size > 0 && cfg.image_size != rgb.size(0) ? io::center_crop_adm(rgb, cfg.image_size)
                                                                          : rgb;
             },
             ds);
  return ds;
}

}  // namespace

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

std::string default_dataset_path(const std::string& name) {
  if (name == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (name == "emoji") return "data/emoji";
  return "";
}

json DatasetConfig::to_json() const { return fields_to_json(*this); }

DatasetConfig DatasetConfig::from_json(const json& j) {
  return fields_from_json<DatasetConfig>(j, "dataset config");
}

std::array<uint8_t, 3> parse_alpha_background(const std::string& value) {
  if (value == "white") return {255, 255, 255};
  if (value == "black") return {0, 0, 0};
  std::array<uint8_t, 3> rgb{};
  size_t start = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? value.find(',', start) : value.size();
    const std::string part = end == std::string::npos ? "" : value.substr(start, end - start);
    bool ok = !part.empty() && part.size() <= 3 &&
              std::all_of(part.begin(), part.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    const int v = ok ? std::stoi(part) : -1;
    CTFGEN_CHECK_USAGE(ok && v <= 255, "dataset.alpha_background: '", value,
                       "' is not white, black or R,G,B with each value in [0, 255]");
    rgb[static_cast<size_t>(i)] = static_cast<uint8_t>(v);
    start = end + 1;
  }
  return rgb;
}

void DatasetConfig::validate() const {
  parse_alpha_background(alpha_background);
  CTFGEN_CHECK_USAGE(name == "fashion-mnist" || name == "imagefolder" || name == "emoji",
                     "dataset.name: unknown dataset '", name, "' (expected fashion-mnist, imagefolder or emoji)");
  CTFGEN_CHECK_USAGE(split == "train" || split == "test", "dataset.split: '", split,
                     "' is not train or test");
  CTFGEN_CHECK_USAGE(image_size >= 0 && image_size <= kMaxImageSize, "dataset.image_size: ", image_size,
                     " is not in [0, ", kMaxImageSize, "]");
  if (name == "fashion-mnist")
    CTFGEN_CHECK_USAGE(image_size == 0 || image_size >= kFashionSide, "dataset.image_size: ", image_size,
                       " is smaller than Fashion-MNIST's native 28 (only padding is supported)");
  CTFGEN_CHECK_USAGE(name != "imagefolder" || !path.empty(), "dataset.path: required for imagefolder");
  CTFGEN_CHECK_USAGE(limit >= 0, "dataset.limit: ", limit, " is negative");
  CTFGEN_CHECK_USAGE(std::isfinite(test_fraction) && test_fraction >= 0.0 && test_fraction < 1.0,
                     "dataset.test_fraction: ", test_fraction, " is not in [0, 1)");
}

Dataset load_dataset(const DatasetConfig& cfg) {
  cfg.validate();
  const std::string path = cfg.path.empty() ? default_dataset_path(cfg.name) : cfg.path;
  Dataset ds;
  if (cfg.name == "fashion-mnist") ds = load_fashion(cfg, path);
  else if (cfg.name == "imagefolder") ds = load_imagefolder(cfg, path);
  else ds = load_emoji(cfg, path);
  ds.name = cfg.name;
  log::info("dataset ", cfg.name, " (", path, ", ", cfg.split, "): ", ds.size(), " images ",
            shape_str(ds.images.sizes().slice(1)), ", ", ds.class_names.size(), " classes");
  if (ds.skipped > 0)
    log::warn("dataset ", cfg.name, " (", path, ", ", cfg.split, "): skipped ", ds.skipped,
              " unreadable image", ds.skipped == 1 ? "" : "s");
  return ds;
}

std::vector<bool> held_out_mask(const std::vector<std::string>& items, const std::string& class_name,
                                double test_fraction, uint64_t seed) {
  const size_t n = items.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<uint64_t> key(n);
  const std::string prefix = str_cat(seed, "/", class_name, "/");
  for (size_t i = 0; i < n; ++i) key[i] = fnv1a64(prefix + items[i]);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return key[a] != key[b] ? key[a] < key[b] : items[a] < items[b];
  });
  const auto n_test = static_cast<size_t>(std::llround(test_fraction * static_cast<double>(n)));
  std::vector<bool> mask(n, false);
  for (size_t i = 0; i < std::min(n_test, n); ++i) mask[order[i]] = true;
  return mask;
}

at::Tensor take(const at::Tensor& t, const at::Tensor& idx) {
  CTFGEN_CHECK(t.defined() && t.dim() >= 1, "take: expected a tensor with a leading dimension");
  CTFGEN_CHECK(idx.dim() == 1 && idx.scalar_type() == at::kLong, "take: indices must be [M] int64, got ",
               c10::toString(idx.scalar_type()), " ", shape_str(idx.sizes()));
  if (idx.numel() > 0) {
    const auto [lo, hi] = int_range(idx);
    CTFGEN_CHECK(lo >= 0 && hi < t.size(0), "take: index range [", lo, ", ", hi, "] is outside [0, ",
                 t.size(0), ")");
  }
  return t.index_select(0, idx.to(t.device()));
}

at::Tensor random_hflip(const at::Tensor& batch, at::Generator& gen) {
  CTFGEN_CHECK_SHAPE(batch, {-1, -1, -1, -1}, "random_hflip batch [B, C, H, W]");
  auto flip = torch::rand({batch.size(0)}, gen, torch::TensorOptions().dtype(torch::kFloat)) < 0.5;
  return torch::where(flip.to(batch.device()).view({-1, 1, 1, 1}), batch.flip({3}), batch);
}

}  // namespace ctfgen::data
