#include "cluster/clustering.h"

#include <torch/torch.h>

#include <chrono>

#include "cluster/agglomerative.h"
#include "core/error.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"
#include "io/torch_import.h"

namespace ctfgen::cluster {

nlohmann::json ClusterConfig::to_json() const { return fields_to_json(*this); }

ClusterConfig ClusterConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<ClusterConfig>(j, "cluster config");
}

KMeansConfig ClusterConfig::kmeans() const {
  KMeansConfig c;
  c.k = k;
  c.max_iter = max_iter;
  c.restarts = restarts;
  c.seed = seed;
  c.tol = tol;
  c.init = init;
  return c;
}

void ClusterConfig::validate() const {
  CTFGEN_CHECK_USAGE(method == "kmeans" || method == "balanced" || method == "agglomerative" ||
                         method == "random",
                     "cluster config: method must be kmeans, balanced, agglomerative or random, "
                     "got '", method, "'");
  kmeans().validate();
}

Codebook load_codebook(const std::string& vq_path) {
  auto comp = io::load_component_or_torch(vq_path, "vq");
  const at::Tensor& w = comp.file.get(kCodebookTensor);
  CTFGEN_CHECK(w.dim() == 2 && w.size(0) >= 1 && w.size(1) >= 1, vq_path, ": '", kCodebookTensor,
               "' has shape ", w.sizes(), ", expected [V, D]");
  CTFGEN_CHECK(w.is_floating_point(), vq_path, ": '", kCodebookTensor, "' has dtype ",
               w.scalar_type(), ", expected floating point");
  Codebook cb;
  cb.raw = w.to(torch::kFloat).contiguous();
  check_finite_points(cb.raw, vq_path + ": " + kCodebookTensor);
  cb.normalized = l2_normalize_rows(cb.raw);
  cb.tokenizer_hash = io::tokenizer_hash(comp.file.tensors);
  return cb;
}

ClusteringOutput cluster_codebook(const at::Tensor& points, const ClusterConfig& config,
                                  const std::string& tokenizer_hash) {
  config.validate();
  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor assign;
  int64_t iterations = 0;
  nlohmann::json details = nlohmann::json::object();
  auto kmeans_details = [](const KMeansResult& r) {
    return nlohmann::json{{"objective", r.objective},
                          {"objective_history", r.objective_history},
                          {"restart_objectives", r.restart_objectives},
                          {"best_restart", r.best_restart},
                          {"iterations", r.iterations},
                          {"converged", r.converged},
                          {"empty_repairs", r.empty_repairs}};
  };
  if (config.method == "kmeans" || config.method == "random") {
    auto r = kmeans(points, config.kmeans());
    details["kmeans"] = kmeans_details(r);
    iterations = r.iterations;
    if (config.method == "kmeans") {
      assign = r.assign;
    } else {
      auto gen = make_generator(config.seed);
      assign = random_partition(cluster_sizes(r.assign, config.k), gen);
      iterations = 0;
    }
  } else if (config.method == "balanced") {
    auto r = balanced_kmeans(points, config.kmeans());
    details["balanced"] = kmeans_details(r);
    assign = r.assign;
    iterations = r.iterations;
  } else {
    AgglomerativeConfig ac;
    ac.k = config.k;
    auto r = average_linkage(points, ac);
    details["agglomerative"] = {{"cut_height", r.cut_height}};
    assign = r.assign;
  }
  const double seconds = seconds_since(t0);
  nlohmann::json method_config = config.to_json();
  if (config.method == "agglomerative") {
    method_config = {{"method", config.method}, {"k", config.k}, {"linkage", "average"},
                     {"distance", "euclidean"}};
  }
  method_config["vectors"] = "l2-normalised codewords";
  ClusteringOutput out{CoarseMap::from_assignment(assign, config.k, points, method_config,
                                                  tokenizer_hash, iterations, seconds),
                       details};
  log::info("clustered ", points.size(0), " codes into ", config.k, " clusters with ",
            config.method, " in ", seconds, " s");
  return out;
}

}  // namespace ctfgen::cluster
