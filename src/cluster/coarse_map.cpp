#include "cluster/coarse_map.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "cluster/kmeans.h"
#include "core/error.h"
#include "io/checkpoint.h"

namespace ctfgen::cluster {

nlohmann::json ClusterStats::to_json() const {
  return {{"objective", objective},
          {"mean_intra_distance", mean_intra_distance},
          {"mean_centroid_distance", mean_centroid_distance},
          {"iterations", iterations},
          {"seconds", seconds}};
}

namespace {

std::vector<int64_t> to_vec(const at::Tensor& t) {
  auto l = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
}

std::string short_hash(const std::string& h) {
  return h.empty() ? std::string("<none>") : h.substr(0, 16);
}

// Mean pairwise distance inside clusters and mean distance to the centroid (fp64).
void compute_stats(const at::Tensor& points, const std::vector<int64_t>& offsets,
                   const std::vector<int64_t>& members, const at::Tensor& centroids,
                   ClusterStats& st) {
  auto p = points.to(torch::kDouble).contiguous();
  auto c = centroids.to(torch::kDouble).contiguous();
  const int64_t d = p.size(1), k = c.size(0), v = p.size(0);
  const double* x = p.data_ptr<double>();
  const double* cx = c.data_ptr<double>();
  double obj = 0, cdist = 0, pair_sum = 0, pairs = 0;
  for (int64_t cl = 0; cl < k; ++cl) {
    const int64_t b = offsets[cl], e = offsets[cl + 1];
    for (int64_t i = b; i < e; ++i) {
      const double* xi = x + members[i] * d;
      double s = 0;
      for (int64_t dd = 0; dd < d; ++dd) {
        const double t = xi[dd] - cx[cl * d + dd];
        s += t * t;
      }
      obj += s;
      cdist += std::sqrt(s);
      for (int64_t j = i + 1; j < e; ++j) {
        const double* xj = x + members[j] * d;
        double q = 0;
        for (int64_t dd = 0; dd < d; ++dd) {
          const double t = xi[dd] - xj[dd];
          q += t * t;
        }
        pair_sum += 2 * std::sqrt(q);
      }
    }
    pairs += static_cast<double>(e - b) * static_cast<double>(e - b - 1);
  }
  st.objective = obj;
  st.mean_centroid_distance = cdist / static_cast<double>(v);
  st.mean_intra_distance = pairs > 0 ? pair_sum / pairs : 0.0;
}

}  // namespace

CoarseMap CoarseMap::from_assignment(const at::Tensor& assign, int64_t k,
                                     const at::Tensor& points_anywhere,
                                     nlohmann::json method_config, std::string tokenizer_hash,
                                     int64_t iterations, double seconds) {
  const at::Tensor points = points_anywhere.cpu();  // a codebook may come from a model on a GPU
  CTFGEN_CHECK(assign.dim() == 1 && assign.size(0) >= 1, "coarse map: assignment must be [V], got ",
               assign.sizes());
  const int64_t v = assign.size(0);
  CTFGEN_CHECK(points.dim() == 2 && points.size(0) == v, "coarse map: points have shape ",
               points.sizes(), ", expected [", v, ", D]");
  check_finite_points(points, "coarse map");
  CTFGEN_CHECK(k >= 1 && k <= v, "coarse map: k = ", k, " outside [1, ", v, "]");
  auto sizes = cluster_sizes(assign, k);
  for (int64_t c = 0; c < k; ++c)
    CTFGEN_CHECK(sizes[c] > 0, "coarse map: cluster label ", c, " has no members");
  auto a = to_vec(assign);
  // Canonical ids: order of first appearance in code order = order of smallest member.
  std::vector<int64_t> canon(k, -1);
  int64_t next = 0;
  std::vector<int64_t> coarse(v);
  for (int64_t i = 0; i < v; ++i) {
    if (canon[a[i]] < 0) canon[a[i]] = next++;
    coarse[i] = canon[a[i]];
  }
  CoarseMap m;
  m.num_codes_ = v;
  m.num_clusters_ = k;
  m.dim_ = points.size(1);
  m.offsets_v_.assign(k + 1, 0);
  for (int64_t i = 0; i < v; ++i) ++m.offsets_v_[coarse[i] + 1];
  for (int64_t c = 0; c < k; ++c) m.offsets_v_[c + 1] += m.offsets_v_[c];
  m.members_v_.assign(v, 0);
  std::vector<int64_t> fill(m.offsets_v_.begin(), m.offsets_v_.end() - 1);
  for (int64_t i = 0; i < v; ++i) m.members_v_[fill[coarse[i]]++] = i;
  m.coarse_v_ = coarse;
  m.coarse_of_ = torch::tensor(coarse, torch::kLong).to(torch::kInt);
  m.offsets_ = torch::tensor(m.offsets_v_, torch::kLong).to(torch::kInt);
  m.members_ = torch::tensor(m.members_v_, torch::kLong).to(torch::kInt);
  auto canon_assign = torch::tensor(coarse, torch::kLong);
  m.centroids_ = cluster_means(points, canon_assign, k);
  m.config_ = std::move(method_config);
  m.tokenizer_hash_ = std::move(tokenizer_hash);
  m.stats_.iterations = iterations;
  m.stats_.seconds = seconds;
  compute_stats(points, m.offsets_v_, m.members_v_, m.centroids_, m.stats_);
  m.build_index();
  return m;
}

void CoarseMap::build_index() {
  coarse_v_ = to_vec(coarse_of_);
  offsets_v_ = to_vec(offsets_);
  members_v_ = to_vec(members_);
  pos_in_cluster_.assign(num_codes_, 0);
  for (int64_t c = 0; c < num_clusters_; ++c)
    for (int64_t i = offsets_v_[c]; i < offsets_v_[c + 1]; ++i)
      pos_in_cluster_[members_v_[i]] = i - offsets_v_[c];
}

std::string CoarseMap::method() const {
  if (config_.is_object() && config_.contains("method") && config_["method"].is_string())
    return config_["method"].get<std::string>();
  return "";
}

std::vector<int64_t> CoarseMap::sizes() const {
  std::vector<int64_t> s(num_clusters_);
  for (int64_t c = 0; c < num_clusters_; ++c) s[c] = offsets_v_[c + 1] - offsets_v_[c];
  return s;
}

std::map<int64_t, int64_t> CoarseMap::size_histogram() const {
  std::map<int64_t, int64_t> h;
  for (int64_t s : sizes()) ++h[s];
  return h;
}

nlohmann::json CoarseMap::summary_json() const {
  auto s = sizes();
  nlohmann::json hist = nlohmann::json::object();
  for (auto [size, count] : size_histogram()) hist[std::to_string(size)] = count;
  int64_t singletons = 0;
  for (int64_t x : s) singletons += x == 1;
  return {{"method", method()},
          {"config", config_},
          {"tokenizer_hash", tokenizer_hash_},
          {"num_codes", num_codes_},
          {"num_clusters", num_clusters_},
          {"dim", dim_},
          {"size_min", *std::min_element(s.begin(), s.end())},
          {"size_max", *std::max_element(s.begin(), s.end())},
          {"size_mean", static_cast<double>(num_codes_) / static_cast<double>(num_clusters_)},
          {"singletons", singletons},
          {"size_histogram", hist},
          {"stats", stats_.to_json()}};
}

void CoarseMap::save(const std::string& path) const {
  CTFGEN_CHECK(num_codes_ > 0, "coarse map: cannot save an empty map to ", path);
  nlohmann::json hist = nlohmann::json::object();
  for (auto [size, count] : size_histogram()) hist[std::to_string(size)] = count;
  nlohmann::json meta = {{"tokenizer_hash", tokenizer_hash_},
                         {"num_codes", num_codes_},
                         {"num_clusters", num_clusters_},
                         {"dim", dim_},
                         {"size_histogram", hist}};
  const auto stats = stats_.to_json();
  for (auto it = stats.begin(); it != stats.end(); ++it) meta[it.key()] = it.value();
  io::save_component(path, "clusters", config_,
                     {{"coarse_of", coarse_of_},
                      {"offsets", offsets_},
                      {"members", members_},
                      {"centroids", centroids_}},
                     meta);
}

CoarseMap CoarseMap::load(const std::string& path) {
  auto comp = io::load_component(path, "clusters");
  const auto& f = comp.file;
  auto get = [&](const char* name, at::ScalarType dt, int64_t dims) {
    const at::Tensor& t = f.get(name);
    CTFGEN_CHECK(t.scalar_type() == dt, path, ": clusters tensor '", name, "' has dtype ",
                 t.scalar_type(), ", expected ", dt);
    CTFGEN_CHECK(t.dim() == dims, path, ": clusters tensor '", name, "' has shape ", t.sizes(),
                 ", expected ", dims, " dims");
    return t;
  };
  CoarseMap m;
  m.source_ = path;
  m.coarse_of_ = get("coarse_of", at::kInt, 1);
  m.offsets_ = get("offsets", at::kInt, 1);
  m.members_ = get("members", at::kInt, 1);
  m.centroids_ = get("centroids", at::kFloat, 2);
  m.num_codes_ = m.coarse_of_.size(0);
  m.num_clusters_ = m.offsets_.size(0) - 1;
  m.dim_ = m.centroids_.size(1);
  m.config_ = comp.config;
  CTFGEN_CHECK(comp.meta.is_object() && comp.meta.contains("tokenizer_hash") &&
                   comp.meta["tokenizer_hash"].is_string(),
               path, ": clusters meta has no 'tokenizer_hash' string");
  m.tokenizer_hash_ = comp.meta["tokenizer_hash"].get<std::string>();
  auto num = [&](const char* key, double dflt) {
    auto it = comp.meta.find(key);
    if (it == comp.meta.end()) return dflt;
    CTFGEN_CHECK(it->is_number(), path, ": clusters meta field '", key, "' is not a number");
    return it->get<double>();
  };
  m.stats_.objective = num("objective", 0);
  m.stats_.mean_intra_distance = num("mean_intra_distance", 0);
  m.stats_.mean_centroid_distance = num("mean_centroid_distance", 0);
  m.stats_.iterations = static_cast<int64_t>(num("iterations", 0));
  m.stats_.seconds = num("seconds", 0);
  m.validate();
  m.build_index();
  return m;
}

void CoarseMap::validate() const {
  const std::string& p = source_.empty() ? std::string("<clusters>") : source_;
  const int64_t v = num_codes_, k = num_clusters_;
  CTFGEN_CHECK(v >= 1, p, ": clusters file has no codes");
  CTFGEN_CHECK(k >= 1 && k <= v, p, ": clusters file has ", k, " clusters for ", v, " codes");
  CTFGEN_CHECK(members_.size(0) == v, p, ": 'members' has ", members_.size(0),
               " entries, 'coarse_of' has ", v);
  CTFGEN_CHECK(centroids_.size(0) == k && dim_ >= 1, p, ": 'centroids' has shape ",
               centroids_.sizes(), ", expected [", k, ", D]");
  CTFGEN_CHECK(torch::isfinite(centroids_).all().item<bool>(), p,
               ": 'centroids' holds NaN or Inf");
  auto coarse = to_vec(coarse_of_), off = to_vec(offsets_), mem = to_vec(members_);
  CTFGEN_CHECK(off[0] == 0 && off[k] == v, p, ": 'offsets' must start at 0 and end at ", v,
               ", got ", off[0], " and ", off[k]);
  std::vector<char> seen(v, 0);
  for (int64_t c = 0; c < k; ++c) {
    CTFGEN_CHECK(off[c + 1] > off[c], p, ": cluster ", c, " is empty or 'offsets' decreases (",
                 off[c], " -> ", off[c + 1], ")");
    for (int64_t i = off[c]; i < off[c + 1]; ++i) {
      const int64_t code = mem[i];
      CTFGEN_CHECK(code >= 0 && code < v, p, ": member ", code, " of cluster ", c,
                   " is outside [0, ", v, ")");
      CTFGEN_CHECK(!seen[code], p, ": code ", code, " is listed in more than one place");
      seen[code] = 1;
      CTFGEN_CHECK(coarse[code] == c, p, ": code ", code, " is a member of cluster ", c,
                   " but coarse_of says ", coarse[code]);
      CTFGEN_CHECK(i == off[c] || mem[i - 1] < code, p, ": members of cluster ", c,
                   " are not in increasing order");
    }
    CTFGEN_CHECK(c == 0 || mem[off[c - 1]] < mem[off[c]], p,
                 ": cluster ids are not canonical (ordered by smallest member) at cluster ", c);
  }
  // Every code was seen exactly once: v members, all distinct, all in range.
}

at::Tensor CoarseMap::to_coarse(const at::Tensor& fine) const {
  CTFGEN_CHECK(num_codes_ > 0, "to_coarse: empty coarse map");
  CTFGEN_CHECK(fine.scalar_type() == at::kLong || fine.scalar_type() == at::kInt,
               "to_coarse: expected int64 codes, got ", fine.scalar_type());
  auto f = fine.to(torch::kCPU, torch::kLong).contiguous();
  auto out = torch::empty(f.sizes(), torch::kLong);
  const int64_t* src = f.data_ptr<int64_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < f.numel(); ++i) {
    CTFGEN_CHECK(src[i] >= 0 && src[i] < num_codes_, "to_coarse: code ", src[i],
                 " is outside [0, ", num_codes_, ")");
    dst[i] = coarse_v_[src[i]];
  }
  return out.to(fine.device());
}

at::Tensor CoarseMap::member_mask() const {
  auto mask = torch::zeros({num_clusters_, num_codes_}, torch::kBool);
  bool* m = mask.data_ptr<bool>();
  for (int64_t v = 0; v < num_codes_; ++v) m[coarse_v_[v] * num_codes_ + v] = true;
  return mask;
}

at::Tensor CoarseMap::replace_with_members(const at::Tensor& fine, at::Generator& gen,
                                           bool exclude_self) const {
  CTFGEN_CHECK(num_codes_ > 0, "replace_with_members: empty coarse map");
  CTFGEN_CHECK(fine.scalar_type() == at::kLong || fine.scalar_type() == at::kInt,
               "replace_with_members: expected int64 codes, got ", fine.scalar_type());
  auto f = fine.to(torch::kCPU, torch::kLong).contiguous();
  auto u = at::rand(f.sizes(), gen, at::TensorOptions().dtype(at::kDouble));
  auto out = torch::empty(f.sizes(), torch::kLong);
  const int64_t* src = f.data_ptr<int64_t>();
  const double* up = u.data_ptr<double>();
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < f.numel(); ++i) {
    const int64_t code = src[i];
    CTFGEN_CHECK(code >= 0 && code < num_codes_, "replace_with_members: code ", code,
                 " is outside [0, ", num_codes_, ")");
    const int64_t c = coarse_v_[code];
    const int64_t b = offsets_v_[c], s = offsets_v_[c + 1] - b;
    if (!exclude_self) {
      const int64_t r = std::min<int64_t>(s - 1, static_cast<int64_t>(up[i] * s));
      dst[i] = members_v_[b + r];
    } else if (s == 1) {
      dst[i] = code;
    } else {
      int64_t r = std::min<int64_t>(s - 2, static_cast<int64_t>(up[i] * (s - 1)));
      if (r >= pos_in_cluster_[code]) ++r;  // skip the token itself
      dst[i] = members_v_[b + r];
    }
  }
  return out.to(fine.device());
}

void CoarseMap::check_tokenizer(const std::string& tokenizer_hash, const std::string& what) const {
  if (tokenizer_hash == tokenizer_hash_) return;
  throw Error(str_cat(what, ": clusters file '", source_.empty() ? "<in memory>" : source_,
                      "' was made for tokenizer ", short_hash(tokenizer_hash_),
                      "..., but the tokenizer in use is ", short_hash(tokenizer_hash),
                      "...; re-run 'ctfgen cluster' on this tokenizer"));
}

}  // namespace ctfgen::cluster
