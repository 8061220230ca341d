// `ctfgen eval-real`: the floors of the evaluation (docs/evaluation.md, "Floors"). Real images
// of one split (or part of a split) are scored against real images of another exactly as
// `ctfgen eval` scores generated ones: FID, IS, precision, recall on the same feature network.
// Real train vs real test is the best a generator that memorised its training set can reach;
// test half vs half is the sampling noise of the metric itself at that sample size.
#include <torch/torch.h>

#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/dataset.h"
#include "eval/classifier.h"
#include "eval/evaluate.h"

namespace ctfgen::cmd_eval_real {

struct Side {
  std::string split = "test";
  std::string part = "0/1";  // "i/n": part i of n of a seeded permutation
  int64_t limit = 0;
};

struct Options {
  std::string classifier, dataset = "fashion-mnist", data_path, out;
  int64_t image_size = 0;
  uint64_t seed = 0;
  Side fake{"train", "0/1", 5000}, real{"test", "0/1", 0};
  ctfgen::eval::EvalConfig metrics;
  bool json = false;
};

std::pair<int64_t, int64_t> parse_part(const std::string& s, const char* flag) {
  const auto slash = s.find('/');
  try {
    CTFGEN_CHECK_USAGE(slash != std::string::npos, "");
    size_t a = 0, b = 0;
    const int64_t i = std::stoll(s.substr(0, slash), &a), n = std::stoll(s.substr(slash + 1), &b);
    CTFGEN_CHECK_USAGE(a == slash && b == s.size() - slash - 1 && n >= 1 && i >= 0 && i < n, "");
    return {i, n};
  } catch (const std::exception&) {
    throw ctfgen::UsageError(ctfgen::str_cat(flag, ": expected PART/PARTS with 0 <= PART < PARTS, got '", s, "'"));
  }
}

at::Tensor load_side(const Options& o, const Side& side, const char* flag) {
  using namespace ctfgen;
  data::DatasetConfig d;
  d.name = o.dataset;
  d.path = o.data_path;
  d.split = side.split;
  d.image_size = o.image_size;
  d.validate();
  auto set = data::load_dataset(d);
  const auto [part, parts] = parse_part(side.part, flag);
  auto idx = eval::select_part(set.images.size(0), part, parts, o.seed, side.limit);
  return set.images.index_select(0, idx);
}

ctfgen::cli::Action setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--classifier", o->classifier, "Feature network: a classifier component (train-classifier)")
      ->required();
  app.add_option("--dataset", o->dataset, "fashion-mnist | imagefolder | emoji")->capture_default_str();
  app.add_option("--data-path", o->data_path, "Dataset location (default: the dataset's own)");
  app.add_option("--image-size", o->image_size, "Image size (0 = native)")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}));
  app.add_option("--split", o->fake.split, "Split scored as if generated")
      ->check(CLI::IsMember({"train", "test"}))->capture_default_str();
  app.add_option("--part", o->fake.part, "Part of that split, PART/PARTS of a seeded permutation")
      ->capture_default_str();
  app.add_option("--limit", o->fake.limit, "At most this many of those images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--ref-split", o->real.split, "Reference split")
      ->check(CLI::IsMember({"train", "test"}))->capture_default_str();
  app.add_option("--ref-part", o->real.part, "Part of the reference split (PART/PARTS)")
      ->capture_default_str();
  app.add_option("--ref-limit", o->real.limit, "At most this many reference images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--seed", o->seed, "Seed of the permutation both sides are cut from")
      ->capture_default_str();
  app.add_option("--pr-k", o->metrics.pr_k, "k of the k-NN manifolds (precision/recall)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))->capture_default_str();
  app.add_option("--out", o->out, "Directory for eval.json (optional)");
  app.add_flag("--json", o->json, "Print the result as JSON");
  return [o] {
    using namespace ctfgen;
    eval::ClassifierNet net(eval::load_classifier(o->classifier));
    auto fake = load_side(*o, o->fake, "--part");
    auto real = load_side(*o, o->real, "--ref-part");
    CTFGEN_CHECK_USAGE(o->fake.split != o->real.split || o->fake.part != o->real.part,
                       "eval-real: both sides are the same images (", o->fake.split, " part ",
                       o->fake.part, "); choose another --part or --ref-split");
    auto r = eval::evaluate_real_vs_real(fake, real, net, o->metrics);
    auto side_json = [](const Side& s) {
      return nlohmann::json{{"split", s.split}, {"part", s.part}, {"limit", s.limit}};
    };
    nlohmann::json j = {{"mode", "real"},
                        {"metrics", r.to_json()},
                        {"dataset", o->dataset},
                        {"fake", side_json(o->fake)},
                        {"real", side_json(o->real)},
                        {"seed", o->seed},
                        {"feature_net", {{"name", net.name()}, {"identity", net.identity()}}},
                        {"ctfgen_version", CTFGEN_VERSION}};
    if (!o->out.empty()) {
      fs::ensure_dir(o->out);
      fs::atomic_write_text(o->out + "/eval.json", j.dump(2) + "\n");
    }
    if (o->json) {
      cli::print_json(j.dump(2));
      return;
    }
    std::printf("%s %s vs %s %s: %lld vs %lld images\n", o->fake.split.c_str(), o->fake.part.c_str(),
                o->real.split.c_str(), o->real.part.c_str(), static_cast<long long>(r.n_fake),
                static_cast<long long>(r.n_real));
    std::printf("FID %.4f  IS %.4f  precision %.4f  recall %.4f\n", r.fid, r.is_mean, r.precision,
                r.recall);
  };
}

CTFGEN_COMMAND("eval-real", "The metrics' floors: real images of one split scored against another",
               setup);

}  // namespace ctfgen::cmd_eval_real
