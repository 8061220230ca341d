// `ctfgen cluster`: clusters a VQ tokenizer's L2-normalised codebook into K coarse labels and
// writes a clusters file (component kind "clusters"); see docs/clustering.md.
#include <cstdio>
#include <memory>

#include "cluster/clustering.h"
#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"

namespace ctfgen::cmd_cluster {

struct ClusterOptions {
  std::string vq;
  std::string out;
  bool json = false;
  ctfgen::cluster::ClusterConfig config;
};

void print_summary(const ctfgen::cluster::ClusteringOutput& r, const std::string& out) {
  const auto s = r.map.summary_json();
  std::printf("clusters file     %s\n", out.c_str());
  std::printf("method            %s\n", s["method"].get<std::string>().c_str());
  std::printf("codes / clusters  %lld codes of dimension %lld -> %lld clusters\n",
              static_cast<long long>(s["num_codes"].get<int64_t>()),
              static_cast<long long>(s["dim"].get<int64_t>()),
              static_cast<long long>(s["num_clusters"].get<int64_t>()));
  std::printf("tokenizer hash    %s\n", s["tokenizer_hash"].get<std::string>().c_str());
  std::printf("cluster sizes     min %lld, max %lld, mean %.2f, singletons %lld\n",
              static_cast<long long>(s["size_min"].get<int64_t>()),
              static_cast<long long>(s["size_max"].get<int64_t>()), s["size_mean"].get<double>(),
              static_cast<long long>(s["singletons"].get<int64_t>()));
  std::string hist;
  const auto& h = s["size_histogram"];
  for (auto it = h.begin(); it != h.end(); ++it)
    hist += (hist.empty() ? "" : ", ") + it.key() + ":" + std::to_string(it->get<int64_t>());
  std::printf("size histogram    %s  (size:number of clusters)\n", hist.c_str());
  const auto& st = s["stats"];
  std::printf("objective         %.6f  (sum of squared distances to centroids)\n",
              st["objective"].get<double>());
  std::printf("mean intra dist   %.6f  (mean distance between members of one cluster)\n",
              st["mean_intra_distance"].get<double>());
  std::printf("mean to centroid  %.6f\n", st["mean_centroid_distance"].get<double>());
  std::printf("iterations        %lld\n", static_cast<long long>(st["iterations"].get<int64_t>()));
  std::printf("time              %.2f s\n", st["seconds"].get<double>());
}

ctfgen::cli::Action setup_cluster(CLI::App& app) {
  auto opt = std::make_shared<ClusterOptions>();
  auto& c = opt->config;
  app.add_option("--vq", opt->vq, "VQ tokenizer component file (kind vq)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", opt->out, "Clusters file to write")->required();
  app.add_option("--k", c.k, "Number of clusters (coarse labels)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  app.add_option("--method", c.method, "kmeans | balanced | agglomerative | random")
      ->check(CLI::IsMember({"kmeans", "balanced", "agglomerative", "random"}))
      ->capture_default_str();
  app.add_option("--seed", c.seed, "Seed of every random choice")->capture_default_str();
  app.add_option("--restarts", c.restarts, "k-means restarts (lowest objective kept)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  app.add_option("--max-iter", c.max_iter, "k-means iterations per restart")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}))
      ->capture_default_str();
  app.add_option("--tol", c.tol, "k-means: also stop when the relative objective gain <= tol")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--init", c.init, "k-means initialisation: kmeans++ | random")
      ->check(CLI::IsMember({"kmeans++", "random"}))
      ->capture_default_str();
  app.add_flag("--json", opt->json, "Print the summary as JSON");
  return [opt] {
    opt->config.validate();
    CTFGEN_CHECK_USAGE(!ctfgen::fs::same_file(opt->out, opt->vq), "--out ", opt->out,
                       " is the tokenizer file itself; choose another path");
    auto cb = ctfgen::cluster::load_codebook(opt->vq);
    ctfgen::log::info("codebook ", cb.raw.size(0), " x ", cb.raw.size(1), " from ", opt->vq);
    auto r = ctfgen::cluster::cluster_codebook(cb.normalized, opt->config, cb.tokenizer_hash);
    r.map.save(opt->out);
    if (opt->json) {
      auto j = r.map.summary_json();
      j["out"] = opt->out;
      j["details"] = r.details;
      ctfgen::cli::print_json(j.dump(2));
    } else {
      print_summary(r, opt->out);
    }
  };
}

CTFGEN_COMMAND("cluster", "Cluster a VQ codebook into K coarse labels (writes a clusters file)",
               setup_cluster);

}  // namespace ctfgen::cmd_cluster
