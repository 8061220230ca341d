#include "cluster/agglomerative.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <numeric>

#include "cluster/kmeans.h"
#include "core/error.h"
#include "core/json_config.h"
#include "core/log.h"

namespace ctfgen::cluster {

nlohmann::json AgglomerativeConfig::to_json() const { return fields_to_json(*this); }

AgglomerativeConfig AgglomerativeConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<AgglomerativeConfig>(j, "agglomerative config");
}

void AgglomerativeConfig::validate() const {
  CTFGEN_CHECK_USAGE(k >= 1, "agglomerative config: k must be >= 1, got ", k);
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Union-find over point ids with path halving.
struct UnionFind {
  std::vector<int64_t> parent;
  explicit UnionFind(int64_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int64_t find(int64_t x) {
    while (parent[x] != x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  }
  void unite(int64_t a, int64_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

// Minimum of row[j] + pen[j] over j in [0, n): 16 independent lanes so the compiler can use
// packed min instructions without fast-math.
inline float masked_row_min(const float* row, const float* pen, int64_t n) {
  constexpr int L = 16;
  float m[L];
  for (int l = 0; l < L; ++l) m[l] = kInf;
  int64_t j = 0;
  for (; j + L <= n; j += L)
    for (int l = 0; l < L; ++l) {
      const float v = row[j + l] + pen[j + l];
      m[l] = v < m[l] ? v : m[l];
    }
  float best = kInf;
  for (; j < n; ++j) {
    const float v = row[j] + pen[j];
    best = v < best ? v : best;
  }
  for (int l = 0; l < L; ++l) best = m[l] < best ? m[l] : best;
  return best;
}

}  // namespace

at::Tensor cut_dendrogram(const std::vector<Merge>& merges, int64_t n, int64_t k) {
  CTFGEN_CHECK(k >= 1 && k <= n, "cut_dendrogram: k = ", k, " outside [1, ", n, "]");
  CTFGEN_CHECK(static_cast<int64_t>(merges.size()) >= n - k, "cut_dendrogram: ", merges.size(),
               " merges cannot reduce ", n, " points to ", k, " clusters");
  UnionFind uf(n);
  for (int64_t m = 0; m < n - k; ++m) uf.unite(merges[m].a, merges[m].b);
  auto out = torch::empty({n}, torch::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  std::vector<int64_t> label_of_root(n, -1);
  int64_t next = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = uf.find(i);
    if (label_of_root[r] < 0) label_of_root[r] = next++;
    o[i] = label_of_root[r];
  }
  CTFGEN_CHECK(next == k, "cut_dendrogram: merges produced ", next, " clusters, expected ", k,
               " (a merge joined points already in one cluster)");
  return out;
}

AgglomerativeResult average_linkage(const at::Tensor& x, const AgglomerativeConfig& config) {
  config.validate();
  check_finite_points(x, "agglomerative clustering");
  const int64_t n = x.size(0);
  const int64_t d = x.size(1);
  CTFGEN_CHECK_USAGE(n >= config.k, "agglomerative clustering: ", n,
                     " points cannot form k = ", config.k, " clusters");
  AgglomerativeResult res;
  if (n == 1) {
    res.assign = torch::zeros({1}, torch::kLong);
    return res;
  }

  // Points transposed, xt[dd * n + j], so a distance row is D passes over contiguous arrays.
  auto xt_t = x.detach().to(torch::kCPU, torch::kFloat).t().contiguous();
  const float* xt = xt_t.data_ptr<float>();

  const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
  std::unique_ptr<float[]> mat;
  try {
    mat.reset(new float[nn]);
  } catch (const std::bad_alloc&) {
    throw Error(str_cat("agglomerative clustering: cannot allocate the ", n, " x ", n,
                        " distance matrix (", nn * sizeof(float) / (1 << 20), " MiB)"));
  }
  float* M = mat.get();

  // Euclidean distances; (a - b)^2 == (b - a)^2 exactly, so the matrix is exactly symmetric.
  at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* row = M + static_cast<size_t>(i) * n;
      for (int64_t j = 0; j < n; ++j) row[j] = 0.f;
      for (int64_t dd = 0; dd < d; ++dd) {
        const float* col = xt + dd * n;
        const float v = col[i];
        for (int64_t j = 0; j < n; ++j) {
          const float t = col[j] - v;
          row[j] += t * t;
        }
      }
      for (int64_t j = 0; j < n; ++j) row[j] = std::sqrt(row[j]);
      row[i] = kInf;
    }
  });

  std::vector<float> pen(n, 0.f);          // 0 for active slots, +inf for merged-away ones
  std::vector<int64_t> size(n, 1);
  std::vector<int64_t> active(n), pos(n);  // active slots and their index in `active`
  std::iota(active.begin(), active.end(), 0);
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<int64_t> chain;
  chain.reserve(n);
  res.merges.reserve(n - 1);

  // Slot s always holds the cluster that contains point s, so merges name points directly.
  while (static_cast<int64_t>(res.merges.size()) < n - 1) {
    if (chain.empty()) chain.push_back(active[0]);
    const int64_t a = chain.back();
    const int64_t prev = chain.size() >= 2 ? chain[chain.size() - 2] : -1;
    const float* row = M + static_cast<size_t>(a) * n;
    const float best = masked_row_min(row, pen.data(), n);
    int64_t b = -1;
    if (prev >= 0 && row[prev] <= best) {
      b = prev;  // ties go to the previous chain element, which guarantees termination
    } else {
      for (int64_t j = 0; j < n; ++j)
        if (row[j] + pen[j] == best) {
          b = j;
          break;
        }
    }
    CTFGEN_CHECK(b >= 0 && b != a, "agglomerative clustering: no nearest neighbour for slot ", a,
                 " (non-finite distance?)");
    if (b != prev) {
      chain.push_back(b);
      continue;
    }
    chain.pop_back();
    chain.pop_back();
    const int64_t s = std::min(a, b), t = std::max(a, b);
    const float h = row[b];
    res.merges.push_back({s, t, h});
    // Lance-Williams for average linkage, written into row s (contiguous), then mirrored
    // into column s for the active slots.
    float* rs = M + static_cast<size_t>(s) * n;
    const float* rt = M + static_cast<size_t>(t) * n;
    const float inv = 1.f / static_cast<float>(size[s] + size[t]);
    const float ws = static_cast<float>(size[s]) * inv, wt = static_cast<float>(size[t]) * inv;
    for (int64_t j = 0; j < n; ++j) rs[j] = ws * rs[j] + wt * rt[j];
    rs[s] = kInf;
    size[s] += size[t];
    pen[t] = kInf;
    const int64_t pt = pos[t];
    active[pt] = active.back();
    pos[active[pt]] = pt;
    active.pop_back();
    for (int64_t j : active) M[static_cast<size_t>(j) * n + s] = rs[j];
  }
  mat.reset();

  std::stable_sort(res.merges.begin(), res.merges.end(),
                   [](const Merge& p, const Merge& q) { return p.height < q.height; });
  res.assign = cut_dendrogram(res.merges, n, config.k);
  res.cut_height = config.k < n ? res.merges[n - config.k - 1].height : 0.0;
  log::debug("agglomerative: ", n, " points -> ", config.k, " clusters, cut height ",
             res.cut_height);
  return res;
}

}  // namespace ctfgen::cluster
