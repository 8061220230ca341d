#include "cluster/redundancy.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "cluster/kmeans.h"
#include "core/error.h"
#include "core/json_config.h"
#include "core/rng.h"
#include "core/shape.h"

namespace ctfgen::cluster {

nlohmann::json RedundancyConfig::to_json() const { return fields_to_json(*this); }

RedundancyConfig RedundancyConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<RedundancyConfig>(j, "redundancy config");
}

void RedundancyConfig::validate() const {
  CTFGEN_CHECK_USAGE(strip_images >= 0 && strip_images <= 64,
                     "redundancy config: strip_images must be in [0, 64], got ", strip_images);
}

CoarseMap random_control(const CoarseMap& like, const at::Tensor& points, uint64_t seed) {
  auto gen = make_generator(seed);
  auto assign = random_partition(like.sizes(), gen);
  nlohmann::json cfg = {{"method", "random"},
                        {"k", like.num_clusters()},
                        {"seed", seed},
                        {"sizes_from", like.method()}};
  if (!like.source().empty()) cfg["sizes_from_file"] = like.source();
  return CoarseMap::from_assignment(assign, like.num_clusters(), points, cfg,
                                    like.tokenizer_hash());
}

RedundancyTest::RedundancyTest(at::Tensor codebook, RedundancyConfig config, EncodeFn encode,
                               DecodeFn decode, ScoreFn score)
    : codebook_(codebook.to(torch::kCPU, torch::kFloat).contiguous()),
      config_(config),
      encode_(std::move(encode)),
      decode_(std::move(decode)),
      score_(std::move(score)) {
  config_.validate();
  CTFGEN_CHECK(codebook_.dim() == 2, "redundancy test: codebook must be [V, D], got ",
               codebook_.sizes());
  CTFGEN_CHECK(encode_ && decode_ && score_, "redundancy test: missing callback");
}

void RedundancyTest::set_set_metrics(FeatureFn features, SetScoreFn score) {
  CTFGEN_CHECK(images_ == 0, "redundancy test: set the set metrics before the first batch");
  CTFGEN_CHECK(features && score, "redundancy test: missing set-metric callback");
  features_ = std::move(features);
  set_score_ = std::move(score);
}

std::map<std::string, double> RedundancyTest::set_scores(const std::vector<at::Tensor>& a,
                                                         const std::vector<at::Tensor>& ref) const {
  if (!set_score_ || a.empty() || ref.empty()) return {};
  return set_score_(torch::cat(a, 0), torch::cat(ref, 0));
}

void RedundancyTest::add_variant(const std::string& name, const CoarseMap& map) {
  CTFGEN_CHECK(images_ == 0, "redundancy test: add variants before the first batch");
  CTFGEN_CHECK(map.num_codes() == codebook_.size(0), "redundancy test: clustering '", name,
               "' covers ", map.num_codes(), " codes, the tokenizer has ", codebook_.size(0));
  Variant v;
  v.name = name;
  v.map = map;
  v.gen = make_generator(config_.seed);
  variants_.push_back(std::move(v));
}

namespace {
void accumulate(std::map<std::string, double>& sums, const std::map<std::string, at::Tensor>& s,
                int64_t batch) {
  for (const auto& [name, t] : s) {
    CTFGEN_CHECK(t.numel() == batch, "redundancy test: metric '", name, "' returned ", t.numel(),
                 " values for ", batch, " images");
    sums[name] += t.to(torch::kDouble).sum().item<double>();
  }
}
nlohmann::json means(const std::map<std::string, double>& sums, int64_t n) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, s] : sums) j[name] = n > 0 ? s / static_cast<double>(n) : 0.0;
  return j;
}
}  // namespace

void RedundancyTest::add_batch(const at::Tensor& images) {
  CTFGEN_CHECK_SHAPE(images, {-1, -1, -1, -1}, "redundancy test images");
  torch::NoGradGuard no_grad;
  const int64_t b = images.size(0);
  auto x = images.to(torch::kCPU, torch::kFloat);
  auto codes = encode_(images).to(torch::kCPU, torch::kLong).contiguous();
  CTFGEN_CHECK(codes.dim() >= 2 && codes.size(0) == b, "redundancy test: encoder returned codes ",
               codes.sizes(), " for ", b, " images");
  auto r0 = decode_(codes).to(torch::kCPU, torch::kFloat);
  CTFGEN_CHECK(r0.sizes() == x.sizes(), "redundancy test: decoder returned ", r0.sizes(),
               " for images ", x.sizes());
  accumulate(recon_vs_orig_, score_(r0, x), b);
  if (features_) {
    feat_orig_.push_back(features_(x).to(torch::kCPU, torch::kFloat));
    feat_recon_.push_back(features_(r0).to(torch::kCPU, torch::kFloat));
  }
  const int64_t keep = std::min<int64_t>(b, config_.strip_images - static_cast<int64_t>(
                                                                      strip_orig_.size()));
  for (int64_t i = 0; i < keep; ++i) {
    strip_orig_.push_back(x[i]);
    strip_recon_.push_back(r0[i]);
  }
  const int64_t ntok = codes.numel();
  const float* cb = codebook_.data_ptr<float>();
  const int64_t d = codebook_.size(1);
  for (auto& v : variants_) {
    auto c1 = v.map.replace_with_members(codes, v.gen, config_.exclude_self);
    auto r1 = decode_(c1).to(torch::kCPU, torch::kFloat);
    CTFGEN_CHECK(r1.sizes() == x.sizes(), "redundancy test: decoder returned ", r1.sizes());
    accumulate(v.vs_orig, score_(r1, x), b);
    accumulate(v.vs_recon, score_(r1, r0), b);
    if (features_) v.features.push_back(features_(r1).to(torch::kCPU, torch::kFloat));
    const int64_t* p0 = codes.data_ptr<int64_t>();
    const int64_t* p1 = c1.data_ptr<int64_t>();
    const auto sizes = v.map.sizes();
    const auto coarse = v.map.to_coarse(codes);
    const int64_t* pc = coarse.data_ptr<int64_t>();
    for (int64_t i = 0; i < ntok; ++i) {
      v.changed += p0[i] != p1[i];
      const double s = static_cast<double>(sizes[pc[i]]);
      v.expected_changed += config_.exclude_self ? (s > 1 ? 1.0 : 0.0) : 1.0 - 1.0 / s;
      double q = 0;
      for (int64_t dd = 0; dd < d; ++dd) {
        const double t = static_cast<double>(cb[p0[i] * d + dd]) - cb[p1[i] * d + dd];
        q += t * t;
      }
      v.sq_dist += q;
    }
    v.tokens += ntok;
    for (int64_t i = 0; i < keep; ++i) v.strip.push_back(r1[i]);
  }
  images_ += b;
  tokens_ += ntok;
}

nlohmann::json RedundancyTest::results_json() const {
  // Per-image means plus the set-level metrics of this row's images.
  auto scores = [&](const std::map<std::string, double>& sums,
                    const std::vector<at::Tensor>& feats, const std::vector<at::Tensor>& ref) {
    auto j = means(sums, images_);
    for (const auto& [name, value] : set_scores(feats, ref)) j[name] = value;
    return j;
  };
  nlohmann::json rows = nlohmann::json::array();
  rows.push_back({{"name", "reconstruction"},
                  {"method", "none"},
                  {"k", nullptr},
                  {"images", images_},
                  {"tokens", tokens_},
                  {"frac_changed", 0.0},
                  {"expected_frac_changed", 0.0},
                  {"mean_sq_code_dist", 0.0},
                  {"vs_original", scores(recon_vs_orig_, feat_recon_, feat_orig_)},
                  {"vs_reconstruction", nlohmann::json::object()}});
  for (const auto& v : variants_) {
    const double t = v.tokens > 0 ? static_cast<double>(v.tokens) : 1.0;
    rows.push_back({{"name", v.name},
                    {"method", v.map.method()},
                    {"k", v.map.num_clusters()},
                    {"images", images_},
                    {"tokens", v.tokens},
                    {"frac_changed", static_cast<double>(v.changed) / t},
                    {"expected_frac_changed", v.expected_changed / t},
                    {"mean_sq_code_dist", v.sq_dist / t},
                    {"vs_original", scores(v.vs_orig, v.features, feat_orig_)},
                    {"vs_reconstruction", scores(v.vs_recon, v.features, feat_recon_)}});
  }
  return {{"config", config_.to_json()}, {"rows", rows}};
}

std::string RedundancyTest::table() const {
  auto j = results_json();
  std::vector<std::string> metrics;
  for (auto& [name, _] : j["rows"][0]["vs_original"].items()) metrics.push_back(name);
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-28s %-14s %6s %8s %8s %10s", "clustering", "method", "K",
                "changed", "expected", "sq_dist");
  out += buf;
  for (auto& m : metrics) {
    std::snprintf(buf, sizeof buf, " %10s %10s", (m + "/orig").c_str(), (m + "/recon").c_str());
    out += buf;
  }
  out += "\n";
  for (const auto& r : j["rows"]) {
    std::string k = r["k"].is_null() ? "-" : std::to_string(r["k"].get<int64_t>());
    // Long names (paths) keep their end, where the file name is.
    std::string name = r["name"].get<std::string>();
    if (name.size() > 28) name = ".." + name.substr(name.size() - 26);
    std::snprintf(buf, sizeof buf, "%-28s %-14s %6s %8.4f %8.4f %10.5f", name.c_str(),
                  r["method"].get<std::string>().substr(0, 14).c_str(), k.c_str(),
                  r["frac_changed"].get<double>(), r["expected_frac_changed"].get<double>(),
                  r["mean_sq_code_dist"].get<double>());
    out += buf;
    for (auto& m : metrics) {
      for (const char* key : {"vs_original", "vs_reconstruction"}) {
        if (r[key].contains(m))
          std::snprintf(buf, sizeof buf, " %10.4f", r[key][m].get<double>());
        else
          std::snprintf(buf, sizeof buf, " %10s", "-");  // e.g. the reconstruction vs itself
        out += buf;
      }
    }
    out += "\n";
  }
  return out;
}

std::vector<std::string> RedundancyTest::strip_columns() const {
  std::vector<std::string> cols{"original", "reconstruction"};
  for (const auto& v : variants_) cols.push_back(v.name);
  return cols;
}

at::Tensor RedundancyTest::strip() const {
  if (strip_orig_.empty()) return {};
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < strip_orig_.size(); ++i) {
    std::vector<at::Tensor> cols{strip_orig_[i], strip_recon_[i]};
    for (const auto& v : variants_) cols.push_back(v.strip[i]);
    rows.push_back(torch::cat(cols, 2));  // [C, H, cols * W]
  }
  return torch::cat(rows, 1);  // [C, rows * H, cols * W]
}

}  // namespace ctfgen::cluster
