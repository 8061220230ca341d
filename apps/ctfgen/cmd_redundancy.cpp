// `ctfgen redundancy`: the token-redundancy test (CTF paper Fig. 1b; docs/clustering.md). Encode
// held-out images, replace every token by a random member of its own cluster, decode, and compare
// with the plain reconstruction and the original, for each cluster file plus a random partition
// with the same cluster sizes.
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cluster/clustering.h"
#include "cluster/redundancy.h"
#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/dataset.h"
#include "eval/classifier.h"
#include "eval/evaluate.h"
#include "eval/feature_metrics.h"
#include "eval/image_metrics.h"
#include "io/image_io.h"
#include "vq/vq_model.h"

namespace ctfgen::cmd_redundancy {

struct Options {
  std::string vq, out;
  std::vector<std::string> clusters;
  ctfgen::data::DatasetConfig dataset;
  ctfgen::cluster::RedundancyConfig config;
  int64_t batch = 256;
  std::string classifier;
  bool json = false;
};

ctfgen::cli::Action setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  o->dataset.split = "test";
  o->dataset.limit = 2000;
  app.add_option("--vq", o->vq, "Tokenizer file (kind vq)")->required();
  app.add_option("--clusters", o->clusters, "Cluster files of this tokenizer (comma separated)")
      ->required()->delimiter(',');
  app.add_option("--dataset", o->dataset.name, "fashion-mnist, imagefolder or emoji")
      ->check(CLI::IsMember({"fashion-mnist", "imagefolder", "emoji"}))->capture_default_str();
  app.add_option("--data-path", o->dataset.path, "Dataset location (default: the dataset's own)");
  app.add_option("--alpha-background", o->dataset.alpha_background,
                 "Transparent pixels are composited onto: white, black or R,G,B")
      ->capture_default_str();
  app.add_flag("--skip-bad", o->dataset.skip_bad,
               "Skip unreadable or corrupt images (their count is reported) instead of failing");
  app.add_option("--split", o->dataset.split, "Images to test")->check(CLI::IsMember({"train", "test"}))->capture_default_str();
  app.add_option("--image-size", o->dataset.image_size, "Image size (0 = native)")->check(CLI::Range(int64_t{0}, int64_t{4096}));
  app.add_option("--limit", o->dataset.limit, "At most this many images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))->capture_default_str();
  app.add_option("--seed", o->config.seed, "Seed of the replacement draws")->capture_default_str();
  app.add_flag("--exclude-self", o->config.exclude_self, "Draw among the other members of the cluster");
  app.add_flag("!--no-random-control", o->config.random_control, "Skip the random partition control");
  app.add_option("--strip-images", o->config.strip_images, "Images in the strip PNG")
      ->check(CLI::Range(int64_t{0}, int64_t{64}))->capture_default_str();
  app.add_option("--batch", o->batch, "Images per encode/decode batch")->check(CLI::Range(int64_t{1}, int64_t{65536}))->capture_default_str();
  app.add_option("--classifier", o->classifier,
                 "Classifier component (train-classifier): also report FID of each variant's images");
  app.add_option("--out", o->out, "Output directory (redundancy.json, strip.png)")->required();
  app.add_flag("--json", o->json, "Print the results as JSON");
  return [o] {
    using namespace ctfgen;
    auto model = vq::load_vq(o->vq);
    const std::string hash = vq::vq_tokenizer_hash(model);
    auto ds = data::load_dataset(o->dataset);
    auto encode = [&](const at::Tensor& x) { return vq::encode_to_indices(model, x, o->batch); };
    auto decode = [&](const at::Tensor& c) {
      return vq::decode_from_indices(model, c, o->batch).clamp(-1.0, 1.0);
    };
    auto score = [](const at::Tensor& a, const at::Tensor& ref) {
      auto ua = io::to_uint8(a), ur = io::to_uint8(ref);
      std::map<std::string, at::Tensor> m{{"psnr", eval::psnr_per_image(ua, ur)}};
      if (a.size(2) >= 11 && a.size(3) >= 11) m["ssim"] = eval::ssim_per_image(ua, ur);
      return m;
    };
    cluster::RedundancyTest test(model->normalized_codebook().detach(), o->config, encode, decode, score);
    std::unique_ptr<eval::ClassifierNet> net;
    if (!o->classifier.empty()) {
      net = std::make_unique<eval::ClassifierNet>(eval::load_classifier(o->classifier));
      test.set_set_metrics(
          [&](const at::Tensor& x) { return eval::extract_features(*net, x, o->batch, false).features; },
          [](const at::Tensor& a, const at::Tensor& ref) {
            return std::map<std::string, double>{
                {"fid", eval::frechet_distance(eval::compute_feature_stats(a),
                                               eval::compute_feature_stats(ref))}};
          });
    }
    for (const auto& path : o->clusters) {
      auto map = cluster::CoarseMap::load(path);
      map.check_tokenizer(hash, path);
      test.add_variant(path, map);
      if (o->config.random_control)
        test.add_variant("random(" + std::filesystem::path(path).filename().string() + ")",
                         cluster::random_control(map, model->normalized_codebook().detach(),
                                                 o->config.seed));
    }
    for (int64_t s = 0; s < ds.size(); s += o->batch)
      test.add_batch(ds.images.slice(0, s, std::min(ds.size(), s + o->batch)));
    fs::ensure_dir(o->out);
    auto j = test.results_json();
    fs::atomic_write_text(o->out + "/redundancy.json", j.dump(2) + "\n");
    auto strip = test.strip();
    if (strip.defined()) io::write_png(o->out + "/strip.png", io::chw_to_hwc(io::to_uint8(strip)));
    if (o->json)
      cli::print_json(j.dump(2));
    else
      std::printf("%s", test.table().c_str());
  };
}

CTFGEN_COMMAND("redundancy",
               "Token-redundancy test: replace tokens by random members of their cluster and "
               "measure the damage (PSNR/SSIM/FID vs original and reconstruction)",
               setup);

}  // namespace ctfgen::cmd_redundancy
