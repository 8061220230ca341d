// `ctfgen encode`: images of a dataset split -> a token directory (codes.npy, labels.npy, meta.json).
#include <cstdio>
#include <memory>

#include "command.h"
#include "core/log.h"
#include "data/dataset.h"
#include "data/token_dir.h"
#include "vq/vq_model.h"

namespace ctfgen::cmd_encode {

struct EncodeOptions {
  std::string vq_path;
  ctfgen::data::DatasetConfig data;
  std::string out;
  bool flip = false;
  int64_t batch = 128;
};

ctfgen::cli::Action setup_encode(CLI::App& app) {
  auto o = std::make_shared<EncodeOptions>();
  app.add_option("--vq", o->vq_path, "VQ component file (kind vq)")->required();
  app.add_option("--dataset", o->data.name, "Dataset: fashion-mnist | imagefolder | emoji")
      ->capture_default_str();
  app.add_option("--data-path", o->data.path, "Dataset location (default: the dataset's own)");
  app.add_option("--alpha-background", o->data.alpha_background,
                 "Transparent pixels are composited onto: white, black or R,G,B")
      ->capture_default_str();
  app.add_flag("--skip-bad", o->data.skip_bad,
               "Skip unreadable or corrupt images (their count is reported) instead of failing");
  app.add_option("--split", o->data.split, "Split: train | test")
      ->check(CLI::IsMember({"train", "test"}))
      ->capture_default_str();
  app.add_option("--image-size", o->data.image_size,
                 "Image size (0 = the tokenizer's image_size for fashion-mnist, else native)")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}))
      ->capture_default_str();
  app.add_option("--limit", o->data.limit, "Encode at most this many images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--out", o->out, "Output token directory")->required();
  app.add_flag("--flip", o->flip, "Also encode horizontally flipped copies (appended after the originals)");
  app.add_option("--batch", o->batch, "Images per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))
      ->capture_default_str();
  return [o] {
    using namespace ctfgen;
    auto model = vq::load_vq(o->vq_path);
    if (o->data.image_size == 0 && o->data.name == "fashion-mnist")
      o->data.image_size = model->config.image_size;
    auto ds = data::load_dataset(o->data);
    log::info("encode: ", ds.size(), " images of ", ds.name, "/", o->data.split);
    data::TokenSet set;
    auto codes = vq::encode_to_indices(model, ds.images, o->batch);
    auto labels = ds.labels;
    if (o->flip) {
      codes = torch::cat({codes, vq::encode_to_indices(model, ds.images.flip({3}), o->batch)}, 0);
      labels = torch::cat({labels, labels}, 0);
    }
    set.codes = codes.to(torch::kInt);
    set.labels = labels.to(torch::kLong);
    set.meta = {{"tokenizer_hash", vq::vq_tokenizer_hash(model)},
                {"codebook_size", model->config.codebook_size},
                {"grid_h", codes.size(1)},
                {"grid_w", codes.size(2)},
                {"num_classes", static_cast<int64_t>(ds.class_names.size())},
                {"class_names", ds.class_names},
                {"dataset", ds.name},
                {"dataset_config", o->data.to_json()},
                {"split", o->data.split},
                {"flipped", o->flip},
                {"vq_path", o->vq_path}};
    data::save_token_dir(o->out, set);
    std::printf("%s: %lld token grids of %lldx%lld\n", o->out.c_str(),
                static_cast<long long>(codes.size(0)), static_cast<long long>(codes.size(1)),
                static_cast<long long>(codes.size(2)));
  };
}

CTFGEN_COMMAND("encode", "Encode a dataset split into a token directory with a VQ tokenizer",
               setup_encode);

}  // namespace ctfgen::cmd_encode
