// Reference statistics of a real image split, computed once per (dataset, split, feature
// network) and cached as a component file of kind "fid-stats":
//   tensors  "mu" [F] F64, "sigma" [F, F] F64, optionally "features" [N, F] F32 (needed for
//            precision/recall), "n" [] I64
//   config   {"dataset", "split", "net", "net_name", "n", "dim", "has_features"}
// The cache file name is derived from the key, and the stored key is compared on load, so a
// different dataset, split or feature network never reuses stale statistics.
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "eval/feature_metrics.h"

namespace ctfgen::eval {

struct StatsKey {
  std::string dataset;   // dataset identity (name, plus a content hash where the caller has one)
  std::string split;     // "train" / "test" / ...
  std::string net;       // FeatureNet::identity()
  std::string net_name;  // FeatureNet::name(), informational only (not part of equality)

  bool operator==(const StatsKey& o) const {
    return dataset == o.dataset && split == o.split && net == o.net;
  }
  /// File name for the cache: "fid-stats-<dataset>-<split>-<first 16 hex of SHA-256(key)>.safetensors"
  /// (dataset and split reduced to [A-Za-z0-9._-]).
  std::string file_name() const;
};

struct ReferenceStats {
  StatsKey key;
  FeatureStats stats;
  at::Tensor features;  // [N, F] float32 or undefined (then precision/recall are unavailable)
};

/// Writes a "fid-stats" component file.
void save_reference_stats(const std::string& path, const ReferenceStats& ref);

/// Reads a "fid-stats" file. When `expected` is given, throws Error naming both keys if the
/// stored key differs.
ReferenceStats load_reference_stats(const std::string& path, const StatsKey* expected = nullptr);

/// Returns the cached statistics for `key` from cache_dir (created if needed) when a valid file
/// exists; otherwise calls compute_features() -> [N, F], computes the statistics, stores them
/// (with the features when keep_features) and returns them. A cache file that fails to load or
/// holds another key is recomputed (with a warning), never silently used.
ReferenceStats cached_reference_stats(const std::string& cache_dir, const StatsKey& key,
                                      const std::function<at::Tensor()>& compute_features,
                                      bool keep_features = true);

}  // namespace ctfgen::eval
