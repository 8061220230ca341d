#include "data/token_dir.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/shape.h"
#include "io/npy.h"

namespace ctfgen::data {

namespace {
int64_t meta_int(const nlohmann::json& meta, const char* key, const std::string& source) {
  auto it = meta.find(key);
  CTFGEN_CHECK(it != meta.end(), source, "/meta.json: has no '", key, "'");
  CTFGEN_CHECK(it->is_number_integer(), source, "/meta.json: field '", key,
               "' must be an integer, got ", it->type_name());
  return it->get<int64_t>();
}

bool is_integer_type(at::ScalarType t) {
  return t == at::kInt || t == at::kLong || t == at::kShort || t == at::kByte || t == at::kChar;
}
}  // namespace

void validate_token_set(const TokenSet& set, const std::string& source) {
  CTFGEN_CHECK(set.codes.defined() && set.codes.dim() == 3, source,
               "/codes.npy: codes must be [N, h, w], got ",
               set.codes.defined() ? shape_str(set.codes.sizes()) : std::string("nothing"));
  CTFGEN_CHECK(is_integer_type(set.codes.scalar_type()), source, "/codes.npy: codes must be integers, got ",
               c10::toString(set.codes.scalar_type()));
  CTFGEN_CHECK(set.labels.defined() && set.labels.dim() == 1, source,
               "/labels.npy: labels must be [N], got ",
               set.labels.defined() ? shape_str(set.labels.sizes()) : std::string("nothing"));
  CTFGEN_CHECK(is_integer_type(set.labels.scalar_type()), source,
               "/labels.npy: labels must be integers, got ", c10::toString(set.labels.scalar_type()));
  CTFGEN_CHECK(set.labels.size(0) == set.codes.size(0), source, "/labels.npy: ", set.codes.size(0),
               " code grids but ", set.labels.size(0), " labels");
  CTFGEN_CHECK(set.meta.is_object(), source, "/meta.json: meta must be a JSON object");
  const int64_t V = meta_int(set.meta, "codebook_size", source);
  CTFGEN_CHECK(V >= 1, source, "/meta.json: codebook_size must be >= 1, got ", V);
  CTFGEN_CHECK(meta_int(set.meta, "grid_h", source) == set.codes.size(1) &&
                   meta_int(set.meta, "grid_w", source) == set.codes.size(2),
               source, "/meta.json: grid ", meta_int(set.meta, "grid_h", source), "x",
               meta_int(set.meta, "grid_w", source), " does not match codes ",
               shape_str(set.codes.sizes()));
  auto hash = set.meta.find("tokenizer_hash");
  CTFGEN_CHECK(hash != set.meta.end() && hash->is_string(), source,
               "/meta.json: has no string 'tokenizer_hash'");
  if (set.codes.numel() > 0) {
    const auto [lo, hi] = int_range(set.codes);
    CTFGEN_CHECK(lo >= 0 && hi < V, source, "/codes.npy: codes must be in [0, ", V, "), got range [", lo,
                 ", ", hi, "]");
  }
  if (set.meta.contains("num_classes") && set.labels.numel() > 0) {
    const int64_t K = meta_int(set.meta, "num_classes", source);
    const auto [lo, hi] = int_range(set.labels);
    CTFGEN_CHECK(lo >= 0 && hi < K, source, "/labels.npy: labels must be in [0, ", K, "), got range [", lo,
                 ", ", hi, "]");
  }
}

TokenSet load_token_dir(const std::string& dir) {
  TokenSet set;
  const std::string meta_path = dir + "/meta.json";
  set.meta = fs::read_json(meta_path);
  set.codes = io::load_npy(dir + "/codes.npy");
  set.labels = io::load_npy(dir + "/labels.npy");
  validate_token_set(set, dir);
  set.codes = set.codes.to(torch::kInt);
  set.labels = set.labels.to(torch::kLong);
  return set;
}

void save_token_dir(const std::string& dir, const TokenSet& set) {
  validate_token_set(set, dir);
  fs::ensure_dir(dir);
  io::save_npy(dir + "/codes.npy", set.codes.to(torch::kInt).contiguous());
  io::save_npy(dir + "/labels.npy", set.labels.to(torch::kLong).contiguous());
  fs::atomic_write_text(dir + "/meta.json", set.meta.dump(2) + "\n");
}

}  // namespace ctfgen::data
