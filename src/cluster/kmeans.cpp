#include "cluster/kmeans.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/rng.h"

namespace ctfgen::cluster {

nlohmann::json KMeansConfig::to_json() const { return fields_to_json(*this); }

KMeansConfig KMeansConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<KMeansConfig>(j, "kmeans config");
}

void KMeansConfig::validate() const {
  CTFGEN_CHECK_USAGE(k >= 1, "kmeans config: k must be >= 1, got ", k);
  CTFGEN_CHECK_USAGE(max_iter >= 1, "kmeans config: max_iter must be >= 1, got ", max_iter);
  CTFGEN_CHECK_USAGE(restarts >= 1, "kmeans config: restarts must be >= 1, got ", restarts);
  CTFGEN_CHECK_USAGE(std::isfinite(tol) && tol >= 0, "kmeans config: tol must be >= 0, got ", tol);
  CTFGEN_CHECK_USAGE(init == "kmeans++" || init == "random",
                     "kmeans config: init must be 'kmeans++' or 'random', got '", init, "'");
}

at::Tensor l2_normalize_rows(const at::Tensor& x) {
  CTFGEN_CHECK(x.dim() == 2, "l2_normalize_rows: expected [N, D], got ", x.dim(), " dims");
  auto xd = x.to(torch::kDouble);
  auto norm = xd.norm(2, {1}, /*keepdim=*/true);
  auto safe = torch::where(norm > 0, norm, torch::ones_like(norm));
  return (xd / safe).to(torch::kFloat).contiguous();
}

void check_finite_points(const at::Tensor& x, const std::string& what) {
  CTFGEN_CHECK(x.dim() == 2, what, ": expected points [N, D], got ", x.dim(), " dims");
  CTFGEN_CHECK(x.is_floating_point(), what, ": expected floating-point points, got ",
               x.scalar_type());
  auto bad = torch::logical_not(torch::isfinite(x)).any(1);
  if (bad.any().item<bool>()) {
    int64_t row = bad.nonzero()[0][0].item<int64_t>();
    int64_t count = bad.sum().item<int64_t>();
    throw Error(str_cat(what, ": input holds NaN or Inf (", count, " of ", x.size(0),
                        " rows; first is row ", row, "); clustering needs finite vectors"));
  }
}

namespace {

// Points in fp64, row-major [n, d].
struct Points {
  int64_t n = 0, d = 0;
  std::vector<double> x;
  const double* row(int64_t i) const { return x.data() + i * d; }
};

Points to_points(const at::Tensor& x, const std::string& what) {
  check_finite_points(x, what);
  Points p;
  p.n = x.size(0);
  p.d = x.size(1);
  CTFGEN_CHECK(p.d >= 1, what, ": points have dimension 0");
  auto xd = x.detach().to(torch::kCPU, torch::kDouble).contiguous();
  p.x.assign(xd.data_ptr<double>(), xd.data_ptr<double>() + p.n * p.d);
  return p;
}

// Centroids kept transposed, ct[dd * k + c], so the per-point distance loop runs over c
// (contiguous, vectorisable).
struct Centroids {
  int64_t k = 0, d = 0;
  std::vector<double> ct;
  void set(int64_t c, const double* v) {
    for (int64_t dd = 0; dd < d; ++dd) ct[dd * k + c] = v[dd];
  }
};

// out[c] = ||xi - centroid c||^2 for every c.
inline void sq_dists(const double* xi, const Centroids& C, double* out) {
  const int64_t k = C.k;
  for (int64_t c = 0; c < k; ++c) out[c] = 0.0;
  for (int64_t dd = 0; dd < C.d; ++dd) {
    const double v = xi[dd];
    const double* row = C.ct.data() + dd * k;
    for (int64_t c = 0; c < k; ++c) {
      const double t = v - row[c];
      out[c] += t * t;
    }
  }
}

inline double sq_dist(const double* a, const double* b, int64_t d) {
  double s = 0;
  for (int64_t i = 0; i < d; ++i) {
    const double t = a[i] - b[i];
    s += t * t;
  }
  return s;
}

// Member means in fp64 (clusters must be non-empty).
void update_means(const Points& P, const std::vector<int64_t>& assign, Centroids& C) {
  std::vector<double> sum(C.k * P.d, 0.0);
  std::vector<int64_t> cnt(C.k, 0);
  for (int64_t i = 0; i < P.n; ++i) {
    const double* xi = P.row(i);
    double* s = sum.data() + assign[i] * P.d;
    for (int64_t dd = 0; dd < P.d; ++dd) s[dd] += xi[dd];
    ++cnt[assign[i]];
  }
  for (int64_t c = 0; c < C.k; ++c) {
    CTFGEN_CHECK(cnt[c] > 0, "k-means: cluster ", c, " is empty when computing means");
    for (int64_t dd = 0; dd < P.d; ++dd)
      C.ct[dd * C.k + c] = sum[c * P.d + dd] / static_cast<double>(cnt[c]);
  }
}

// Assignment step: each point moves to its nearest centroid, but keeps its current one on
// ties (so the objective cannot increase). dist[i] gets the squared distance. Returns the
// number of points whose cluster changed.
int64_t assign_step(const Points& P, const Centroids& C, std::vector<int64_t>& assign,
                    std::vector<double>& dist) {
  std::vector<int64_t> changed_per_chunk;
  const int64_t grain = 256;
  const int64_t chunks = (P.n + grain - 1) / grain;
  changed_per_chunk.assign(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    std::vector<double> buf(C.k);
    for (int64_t ch = cb; ch < ce; ++ch) {
      int64_t changed = 0;
      const int64_t e = std::min(P.n, (ch + 1) * grain);
      for (int64_t i = ch * grain; i < e; ++i) {
        sq_dists(P.row(i), C, buf.data());
        int64_t best = 0;
        double bd = buf[0];
        for (int64_t c = 1; c < C.k; ++c)
          if (buf[c] < bd) {
            bd = buf[c];
            best = c;
          }
        const int64_t cur = assign[i];
        if (cur >= 0 && buf[cur] <= bd) best = cur;
        if (best != cur) ++changed;
        assign[i] = best;
        dist[i] = buf[best];
      }
      changed_per_chunk[ch] = changed;
    }
  });
  return std::accumulate(changed_per_chunk.begin(), changed_per_chunk.end(), int64_t{0});
}

// Re-seeds every empty cluster with the point farthest from its centroid among clusters with
// at least two members (such a cluster exists whenever n >= k). The moved point becomes the
// new centroid, so its distance drops to 0 and the objective does not increase.
int64_t repair_empty(const Points& P, Centroids& C, std::vector<int64_t>& assign,
                     std::vector<double>& dist) {
  std::vector<int64_t> size(C.k, 0);
  for (int64_t a : assign) ++size[a];
  int64_t repairs = 0;
  for (int64_t c = 0; c < C.k; ++c) {
    if (size[c] > 0) continue;
    int64_t pick = -1;
    double far = -1;
    for (int64_t i = 0; i < P.n; ++i)
      if (size[assign[i]] >= 2 && dist[i] > far) {
        far = dist[i];
        pick = i;
      }
    CTFGEN_CHECK(pick >= 0, "k-means: cannot repair empty cluster ", c, " (", P.n, " points, ",
                 C.k, " clusters)");
    --size[assign[pick]];
    assign[pick] = c;
    size[c] = 1;
    dist[pick] = 0;
    C.set(c, P.row(pick));
    ++repairs;
  }
  return repairs;
}

std::vector<double> uniforms(int64_t n, at::Generator& gen) {
  auto u = at::rand({n}, gen, at::TensorOptions().dtype(at::kDouble));
  return std::vector<double>(u.data_ptr<double>(), u.data_ptr<double>() + n);
}

inline int64_t pick_index(double u, int64_t n) {
  return std::min<int64_t>(n - 1, static_cast<int64_t>(u * static_cast<double>(n)));
}

// k-means++ (D^2 sampling): the first centre uniformly, each next one with probability
// proportional to the squared distance to the nearest chosen centre.
Centroids init_kmeanspp(const Points& P, int64_t k, at::Generator& gen) {
  Centroids C{k, P.d, std::vector<double>(k * P.d)};
  auto u = uniforms(k, gen);
  int64_t first = pick_index(u[0], P.n);
  C.set(0, P.row(first));
  std::vector<double> mind(P.n);
  for (int64_t i = 0; i < P.n; ++i) mind[i] = sq_dist(P.row(i), P.row(first), P.d);
  for (int64_t c = 1; c < k; ++c) {
    double total = 0;
    for (double v : mind) total += v;
    int64_t pick = -1;
    if (total > 0) {
      const double r = u[c] * total;
      double cum = 0;
      for (int64_t i = 0; i < P.n; ++i) {
        if (mind[i] <= 0) continue;
        cum += mind[i];
        pick = i;
        if (cum > r) break;
      }
    } else {
      pick = pick_index(u[c], P.n);  // every point coincides with a centre already
    }
    C.set(c, P.row(pick));
    for (int64_t i = 0; i < P.n; ++i)
      mind[i] = std::min(mind[i], sq_dist(P.row(i), P.row(pick), P.d));
  }
  return C;
}

Centroids init_random(const Points& P, int64_t k, at::Generator& gen) {
  Centroids C{k, P.d, std::vector<double>(k * P.d)};
  auto perm = at::randperm(P.n, gen, at::TensorOptions().dtype(at::kLong));
  const int64_t* p = perm.data_ptr<int64_t>();
  for (int64_t c = 0; c < k; ++c) C.set(c, P.row(p[c]));
  return C;
}

at::Tensor centroids_tensor(const Centroids& C) {
  auto t = torch::empty({C.k, C.d}, torch::kDouble);
  double* o = t.data_ptr<double>();
  for (int64_t c = 0; c < C.k; ++c)
    for (int64_t dd = 0; dd < C.d; ++dd) o[c * C.d + dd] = C.ct[dd * C.k + c];
  return t.to(torch::kFloat);
}

at::Tensor assign_tensor(const std::vector<int64_t>& a) {
  return torch::tensor(a, torch::kLong);
}

double objective_of(const Points& P, const Centroids& C, const std::vector<int64_t>& assign) {
  double s = 0;
  std::vector<double> c(P.d);
  for (int64_t i = 0; i < P.n; ++i) {
    for (int64_t dd = 0; dd < P.d; ++dd) c[dd] = C.ct[dd * C.k + assign[i]];
    s += sq_dist(P.row(i), c.data(), P.d);
  }
  return s;
}

// Records restart r's objective and keeps its solution in `best` when it is the lowest so far.
void keep_if_better(KMeansResult& best, int64_t r, double obj, const Centroids& C,
                    const std::vector<int64_t>& assign, const std::vector<double>& history,
                    int64_t iterations, bool converged) {
  best.restart_objectives.push_back(obj);
  if (!(obj < best.objective)) return;
  best.objective = obj;
  best.assign = assign_tensor(assign);
  best.centroids = centroids_tensor(C);
  best.objective_history = history;
  best.iterations = iterations;
  best.best_restart = r;
  best.converged = converged;
}

void check_inputs(const Points& P, const KMeansConfig& cfg, const char* what) {
  cfg.validate();
  CTFGEN_CHECK_USAGE(P.n >= cfg.k, what, ": ", P.n, " points cannot form k = ", cfg.k,
                     " non-empty clusters (need at least k points)");
}

}  // namespace

KMeansResult kmeans(const at::Tensor& x, const KMeansConfig& config) {
  Points P = to_points(x, "k-means");
  check_inputs(P, config, "k-means");
  auto gen = make_generator(config.seed);
  KMeansResult best;
  best.objective = std::numeric_limits<double>::infinity();
  int64_t total_repairs = 0;
  for (int64_t r = 0; r < config.restarts; ++r) {
    Centroids C = config.init == "kmeans++" ? init_kmeanspp(P, config.k, gen)
                                            : init_random(P, config.k, gen);
    std::vector<int64_t> assign(P.n, -1);
    std::vector<double> dist(P.n, 0.0);
    std::vector<double> history;
    bool converged = false;
    int64_t it = 0;
    while (it < config.max_iter) {
      ++it;
      const int64_t changed = assign_step(P, C, assign, dist);
      const int64_t repairs = repair_empty(P, C, assign, dist);
      total_repairs += repairs;
      double obj = 0;
      for (double v : dist) obj += v;
      history.push_back(obj);
      if (changed == 0 && repairs == 0) {  // centroids are already the means of this assignment
        converged = true;
        break;
      }
      update_means(P, assign, C);
      if (config.tol > 0 && history.size() >= 2) {
        const double prev = history[history.size() - 2];
        if (prev - obj <= config.tol * prev) {
          converged = true;
          break;
        }
      }
    }
    const double obj = objective_of(P, C, assign);
    log::debug("k-means restart ", r, ": ", it, " iterations, objective ", obj,
               converged ? "" : " (max_iter reached)");
    keep_if_better(best, r, obj, C, assign, history, it, converged);
  }
  best.empty_repairs = total_repairs;
  return best;
}

KMeansResult balanced_kmeans(const at::Tensor& x, const KMeansConfig& config) {
  Points P = to_points(x, "balanced k-means");
  check_inputs(P, config, "balanced k-means");
  CTFGEN_CHECK_USAGE(P.n % config.k == 0, "balanced k-means: ", P.n,
                     " points cannot be split into k = ", config.k,
                     " clusters of equal size (k must divide the number of points)");
  const int64_t cap = P.n / config.k;
  auto gen = make_generator(config.seed);
  KMeansResult best;
  best.objective = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < config.restarts; ++r) {
    Centroids C = init_random(P, config.k, gen);
    std::vector<int64_t> assign(P.n, -1), prev;
    std::vector<double> nearest(P.n);
    std::vector<double> history;
    std::vector<int64_t> order(P.n);
    bool converged = false;
    int64_t it = 0;
    while (it < config.max_iter) {
      ++it;
      at::parallel_for(0, P.n, 256, [&](int64_t b, int64_t e) {
        std::vector<double> buf(C.k);
        for (int64_t i = b; i < e; ++i) {
          sq_dists(P.row(i), C, buf.data());
          nearest[i] = *std::min_element(buf.begin(), buf.end());
        }
      });
      std::iota(order.begin(), order.end(), int64_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return nearest[a] < nearest[b]; });
      prev = assign;
      std::vector<int64_t> count(C.k, 0);
      std::vector<double> buf(C.k);
      double obj = 0;
      for (int64_t i : order) {
        sq_dists(P.row(i), C, buf.data());
        int64_t pick = -1;
        double bd = std::numeric_limits<double>::infinity();
        for (int64_t c = 0; c < C.k; ++c)
          if (count[c] < cap && buf[c] < bd) {
            bd = buf[c];
            pick = c;
          }
        assign[i] = pick;
        ++count[pick];
        obj += bd;
      }
      history.push_back(obj);
      if (assign == prev) {
        converged = true;
        break;
      }
      update_means(P, assign, C);
    }
    const double obj = objective_of(P, C, assign);
    log::debug("balanced k-means restart ", r, ": ", it, " iterations, objective ", obj);
    keep_if_better(best, r, obj, C, assign, history, it, converged);
  }
  return best;
}

std::vector<int64_t> cluster_sizes(const at::Tensor& assign, int64_t k) {
  CTFGEN_CHECK(assign.dim() == 1, "cluster_sizes: expected [N] labels, got ", assign.dim(),
               " dims");
  auto a = assign.to(torch::kLong).contiguous();
  std::vector<int64_t> sizes(k, 0);
  const int64_t* p = a.data_ptr<int64_t>();
  for (int64_t i = 0; i < a.numel(); ++i) {
    CTFGEN_CHECK(p[i] >= 0 && p[i] < k, "cluster_sizes: label ", p[i], " at ", i,
                 " is outside [0, ", k, ")");
    ++sizes[p[i]];
  }
  return sizes;
}

at::Tensor random_partition(const std::vector<int64_t>& sizes, at::Generator& gen) {
  int64_t n = 0;
  for (size_t c = 0; c < sizes.size(); ++c) {
    CTFGEN_CHECK(sizes[c] >= 0, "random_partition: size of cluster ", c, " is negative");
    n += sizes[c];
  }
  CTFGEN_CHECK(n > 0, "random_partition: no points");
  auto perm = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
  const int64_t* p = perm.data_ptr<int64_t>();
  auto out = torch::empty({n}, torch::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  int64_t pos = 0;
  for (size_t c = 0; c < sizes.size(); ++c)
    for (int64_t j = 0; j < sizes[c]; ++j) o[p[pos++]] = static_cast<int64_t>(c);
  return out;
}

at::Tensor cluster_means(const at::Tensor& x, const at::Tensor& assign, int64_t k) {
  Points P = to_points(x, "cluster_means");
  CTFGEN_CHECK(assign.dim() == 1 && assign.size(0) == P.n, "cluster_means: assignment has shape ",
               assign.sizes(), ", expected [", P.n, "]");
  cluster_sizes(assign, k);  // range check of every label
  auto a = assign.to(torch::kLong).contiguous();
  std::vector<int64_t> av(a.data_ptr<int64_t>(), a.data_ptr<int64_t>() + P.n);
  Centroids C{k, P.d, std::vector<double>(k * P.d)};
  update_means(P, av, C);
  return centroids_tensor(C);
}

double clustering_objective(const at::Tensor& x, const at::Tensor& assign,
                            const at::Tensor& centroids) {
  Points P = to_points(x, "clustering_objective");
  CTFGEN_CHECK(centroids.dim() == 2 && centroids.size(1) == P.d,
               "clustering_objective: centroids have shape ", centroids.sizes());
  const int64_t k = centroids.size(0);
  CTFGEN_CHECK(assign.dim() == 1 && assign.size(0) == P.n,
               "clustering_objective: assignment has shape ", assign.sizes());
  auto a = assign.to(torch::kLong).contiguous();
  auto c = centroids.to(torch::kDouble).contiguous();
  const int64_t* ap = a.data_ptr<int64_t>();
  const double* cp = c.data_ptr<double>();
  double s = 0;
  for (int64_t i = 0; i < P.n; ++i) {
    CTFGEN_CHECK(ap[i] >= 0 && ap[i] < k, "clustering_objective: label ", ap[i], " at ", i,
                 " is outside [0, ", k, ")");
    s += sq_dist(P.row(i), cp + ap[i] * P.d, P.d);
  }
  return s;
}

}  // namespace ctfgen::cluster
