#include "io/safetensors.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/shape.h"

namespace ctfgen::io {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
    {"I16", at::kShort, 2}, {"I8", at::kChar, 1}, {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1}};

const DtypeInfo* find_dtype(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

// Parses the header JSON, rejecting duplicate keys and nesting deeper than the format allows.
json parse_header(const char* text, size_t n, const std::string& source) {
  std::vector<std::set<std::string>> keys;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > 3) throw Error(str_cat(source, ": safetensors header nests too deeply"));
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second)
        throw Error(str_cat(source, ": safetensors header has the key '", k, "' twice"));
    }
    return true;
  };
  try {
    return json::parse(text, text + n, cb);
  } catch (const json::exception& e) {
    throw Error(str_cat(source, ": safetensors header is not valid JSON (", e.what(), ")"));
  }
}

uint64_t as_u64(const json& v, const std::string& source, const std::string& what) {
  CTFGEN_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), source,
               ": ", what, " must be a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

}  // namespace

bool SafetensorsFile::has(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
}

const at::Tensor& SafetensorsFile::get(const std::string& name) const {
  for (const auto& p : tensors)
    if (p.first == name) return p.second;
  throw Error(str_cat(source, ": no tensor named '", name, "'"));
}

std::string dtype_to_safetensors(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error(str_cat("safetensors: unsupported dtype ", c10::toString(t)));
}

at::ScalarType dtype_from_safetensors(const std::string& s, const std::string& context) {
  auto* d = find_dtype(s);
  CTFGEN_CHECK(d, context, ": unsupported dtype '", s, "'");
  return d->type;
}

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& source) {
  CTFGEN_CHECK(size >= 8, source, ": not a safetensors file (", size,
               " bytes, shorter than the 8-byte header length)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  CTFGEN_CHECK(n <= kMaxSafetensorsHeader, source, ": safetensors header length ", n,
               " exceeds the limit of ", kMaxSafetensorsHeader, " bytes");
  CTFGEN_CHECK(n <= size - 8, source, ": safetensors header length ", n,
               " runs past the end of the file (", size, " bytes)");
  CTFGEN_CHECK(n >= 2, source, ": safetensors header is too short (", n, " bytes)");
  json header = parse_header(reinterpret_cast<const char*>(data + 8), n, source);
  CTFGEN_CHECK(header.is_object(), source, ": safetensors header must be a JSON object");

  SafetensorsFile out;
  out.source = source;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      CTFGEN_CHECK(v.is_object(), source, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        CTFGEN_CHECK(m.value().is_string(), source, ": __metadata__ value for '", m.key(),
                     "' must be a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    std::string ctx = str_cat(source, ": tensor '", name, "'");
    CTFGEN_CHECK(v.is_object(), ctx, ": entry must be an object");
    for (auto f = v.begin(); f != v.end(); ++f)
      CTFGEN_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", ctx,
                   ": unknown field '", f.key(), "'");
    CTFGEN_CHECK(v.contains("dtype") && v["dtype"].is_string(), ctx, ": missing or bad 'dtype'");
    CTFGEN_CHECK(v.contains("shape") && v["shape"].is_array(), ctx, ": missing or bad 'shape'");
    CTFGEN_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() &&
                     v["data_offsets"].size() == 2,
                 ctx, ": 'data_offsets' must be [begin, end]");
    Entry e;
    e.name = name;
    e.dtype = find_dtype(v["dtype"].get<std::string>());
    CTFGEN_CHECK(e.dtype, ctx, ": unsupported dtype '", v["dtype"].get<std::string>(), "'");
    CTFGEN_CHECK(v["shape"].size() <= 16, ctx, ": too many dimensions (", v["shape"].size(), ")");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      uint64_t dim = as_u64(d, ctx, "a shape entry");
      CTFGEN_CHECK(dim <= static_cast<uint64_t>(INT64_MAX), ctx, ": dimension too large");
      CTFGEN_CHECK(!mul_overflows(numel, dim, &numel), ctx, ": element count overflows");
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t nbytes = 0;
    CTFGEN_CHECK(!mul_overflows(numel, e.dtype->size, &nbytes), ctx, ": byte size overflows");
    e.begin = as_u64(v["data_offsets"][0], ctx, "data_offsets[0]");
    e.end = as_u64(v["data_offsets"][1], ctx, "data_offsets[1]");
    CTFGEN_CHECK(e.end >= e.begin, ctx, ": data_offsets end ", e.end, " is before begin ", e.begin);
    CTFGEN_CHECK(e.end - e.begin == nbytes, ctx, ": data_offsets span ", e.end - e.begin,
                 " bytes but dtype ", e.dtype->name, " and shape ", shape_str(e.shape), " need ",
                 nbytes);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const auto& e : entries) {
    CTFGEN_CHECK(e.begin == expect, source, ": tensor '", e.name, "' starts at byte ", e.begin,
                 ", expected ", expect, " (offsets must be contiguous, without gaps or overlaps)");
    expect = e.end;
  }
  uint64_t body = size - 8 - n;
  CTFGEN_CHECK(expect == body, source, ": file length does not match the header (data section is ",
               body, " bytes, tensors cover ", expect, ")");
  const uint8_t* base = data + 8 + n;
  for (const auto& e : entries) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type));
    if (e.dtype->type == at::kBool)  // any byte but 0/1 in a bool tensor is undefined behaviour
      for (uint64_t i = e.begin; i < e.end; ++i)
        CTFGEN_CHECK(base[i] <= 1, source, ": tensor '", e.name, "': BOOL data holds the byte ", int{base[i]},
                     " at element ", i - e.begin);
    if (e.end > e.begin) std::memcpy(t.data_ptr(), base + e.begin, e.end - e.begin);
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) {
  auto bytes = fs::read_file(path);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> serialize_safetensors(const NamedTensors& tensors, const Metadata& metadata) {
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  std::vector<at::Tensor> cpu;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    CTFGEN_CHECK(name != "__metadata__" && !name.empty(), "safetensors: invalid tensor name '",
                 name, "'");
    CTFGEN_CHECK(names.insert(name).second, "safetensors: duplicate tensor name '", name, "'");
    CTFGEN_CHECK(t.defined(), "safetensors: tensor '", name, "' is undefined");
    auto c = t.detach().to(torch::kCPU).contiguous();
    uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_to_safetensors(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    cpu.push_back(c);
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  std::vector<uint8_t> out(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* p = out.data() + 8 + text.size();
  for (const auto& c : cpu) {
    size_t nb = static_cast<size_t>(c.numel()) * c.element_size();
    if (nb) std::memcpy(p, c.data_ptr(), nb);
    p += nb;
  }
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata) {
  auto bytes = serialize_safetensors(tensors, metadata);
  fs::atomic_write(path, bytes.data(), bytes.size());
}

}  // namespace ctfgen::io
