#include "eval/fid_stats.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/shape.h"
#include "io/checkpoint.h"

namespace ctfgen::eval {

namespace {

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    out += ok ? c : '_';
  }
  if (out.size() > 40) out.resize(40);
  return out.empty() ? std::string("x") : out;
}

nlohmann::json key_json(const StatsKey& k) {
  return {{"dataset", k.dataset}, {"split", k.split}, {"net", k.net}, {"net_name", k.net_name}};
}

}  // namespace

std::string StatsKey::file_name() const {
  // net_name is informational; hash only the identifying fields.
  const std::string id = nlohmann::json{{"dataset", dataset}, {"split", split}, {"net", net}}.dump();
  return "fid-stats-" + sanitize(dataset) + "-" + sanitize(split) + "-" +
         fs::sha256_bytes(id.data(), id.size()).substr(0, 16) + ".safetensors";
}

void save_reference_stats(const std::string& path, const ReferenceStats& ref) {
  const auto& s = ref.stats;
  CTFGEN_CHECK(s.mu.defined() && s.mu.dim() == 1, "save_reference_stats: mu must be [F]");
  CTFGEN_CHECK_SHAPE(s.sigma, {s.dim(), s.dim()}, "save_reference_stats sigma");
  CTFGEN_CHECK(s.n >= 2, "save_reference_stats: n must be >= 2, got ", s.n);
  io::NamedTensors tensors{{"mu", s.mu.to(torch::kCPU, torch::kDouble).contiguous()},
                           {"sigma", s.sigma.to(torch::kCPU, torch::kDouble).contiguous()},
                           {"n", torch::tensor(s.n, torch::kLong)}};
  const bool has_features = ref.features.defined();
  if (has_features) {
    CTFGEN_CHECK_SHAPE(ref.features, {s.n, s.dim()}, "save_reference_stats features");
    tensors.emplace_back("features", ref.features.to(torch::kCPU, torch::kFloat).contiguous());
  }
  auto config = key_json(ref.key);
  config["n"] = s.n;
  config["dim"] = s.dim();
  config["has_features"] = has_features;
  io::save_component(path, "fid-stats", config, tensors);
}

ReferenceStats load_reference_stats(const std::string& path, const StatsKey* expected) {
  auto comp = io::load_component(path, "fid-stats");
  ReferenceStats ref;
  int64_t n = 0, dim = 0;
  bool has_features = false;
  JsonFields f(comp.config, path + " config");
  f.get("dataset", ref.key.dataset);
  f.get("split", ref.key.split);
  f.get("net", ref.key.net);
  f.get("net_name", ref.key.net_name);
  f.get("n", n);
  f.get("dim", dim);
  f.get("has_features", has_features);
  f.finish();
  if (expected && !(*expected == ref.key))
    throw Error(str_cat(path, ": statistics are for dataset '", ref.key.dataset, "' split '",
                        ref.key.split, "' net ", ref.key.net.substr(0, 16), ", expected dataset '",
                        expected->dataset, "' split '", expected->split, "' net ",
                        expected->net.substr(0, 16)));
  CTFGEN_CHECK(n >= 2 && dim >= 1, path, ": bad n ", n, " or dim ", dim);
  ref.stats.mu = comp.file.get("mu").to(torch::kDouble);
  ref.stats.sigma = comp.file.get("sigma").to(torch::kDouble);
  ref.stats.n = n;
  CTFGEN_CHECK_SHAPE(ref.stats.mu, {dim}, (path + " mu").c_str());
  CTFGEN_CHECK_SHAPE(ref.stats.sigma, {dim, dim}, (path + " sigma").c_str());
  CTFGEN_CHECK(comp.file.get("n").numel() == 1 && comp.file.get("n").item<int64_t>() == n, path,
               ": tensor 'n' disagrees with the config");
  CTFGEN_CHECK(has_features == comp.file.has("features"), path,
               ": has_features disagrees with the tensors");
  if (has_features) {
    ref.features = comp.file.get("features").to(torch::kFloat);
    CTFGEN_CHECK_SHAPE(ref.features, {n, dim}, (path + " features").c_str());
  }
  return ref;
}

ReferenceStats cached_reference_stats(const std::string& cache_dir, const StatsKey& key,
                                      const std::function<at::Tensor()>& compute_features,
                                      bool keep_features) {
  CTFGEN_CHECK_USAGE(!cache_dir.empty(), "reference statistics: empty cache directory");
  fs::ensure_dir(cache_dir);
  const std::string path = cache_dir + "/" + key.file_name();
  if (fs::exists(path)) {
    try {
      auto ref = load_reference_stats(path, &key);
      if (!keep_features || ref.features.defined()) {
        log::info("reference statistics: using cache ", path, " (n = ", ref.stats.n, ")");
        if (!keep_features) ref.features = at::Tensor();
        return ref;
      }
      log::info("reference statistics: cache ", path, " has no features; recomputing");
    } catch (const Error& e) {
      log::warn("reference statistics: ignoring unusable cache file (", e.what(), ")");
    }
  }
  auto features = compute_features();
  CTFGEN_CHECK(features.defined() && features.dim() == 2,
               "reference statistics: compute_features must return [N, F]");
  ReferenceStats ref;
  ref.key = key;
  ref.stats = compute_feature_stats(features);
  if (keep_features) ref.features = features.detach().to(torch::kCPU, torch::kFloat).contiguous();
  save_reference_stats(path, ref);
  log::info("reference statistics: wrote ", path, " (n = ", ref.stats.n, ", dim = ",
            ref.stats.dim(), ")");
  return ref;
}

}  // namespace ctfgen::eval
