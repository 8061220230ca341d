#include "io/torch_import.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "io/zip_reader.h"

namespace ctfgen::io {

namespace {

using pickle::Kind;

std::string basename_of(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// A legacy (pre-1.6 or _use_new_zipfile_serialization=False) torch file is a raw pickle stream
// starting with PROTO 2 and the magic number 0x1950a86a20f9469cfc6c as a LONG1.
bool looks_like_legacy_torch(const uint8_t* d, size_t n) {
  return n >= 2 && d[0] == 0x80 && d[1] <= 5;
}

void refuse_non_zip(const uint8_t* head, size_t n, const std::string& source) {
  if (looks_like_legacy_torch(head, n))
    throw Error(str_cat(source,
                        ": legacy (non-zip) PyTorch serialization format (torch < 1.6 or "
                        "_use_new_zipfile_serialization=False) is not supported; re-save it with "
                        "torch.save(torch.load(path), path) in PyTorch >= 1.6"));
  // A safetensors file starts with its u64 header length followed by '{'.
  if (n >= 9 && head[8] == '{')
    throw Error(str_cat(source, ": this is a safetensors file, not a PyTorch .pt checkpoint"));
  throw Error(str_cat(source, ": not a PyTorch zip checkpoint (no ZIP signature)"));
}

// ---- the checkpoint's saved training arguments (an argparse.Namespace under "args") ----

constexpr size_t kMaxArgsFields = 1000;  // fields kept; the rest are noted as left out
constexpr size_t kMaxArgsList = 256;     // items of a list / tuple field
constexpr size_t kMaxArgsStr = 4096;     // bytes of a str field

// Whether nlohmann::json can dump `s` (valid UTF-8 as its strict dump checks it), so that the
// meta and --json output never fail on text from the file.
bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// Text from the file for a note: bytes outside printable ASCII become '?', at most 80 of them.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 80; ++i)
    out += (s[i] >= 0x20 && s[i] < 0x7F) ? s[i] : '?';
  return s.size() > 80 ? out + "..." : out;
}

// One plain value (None, bool, int, float, str) as JSON; false with `why` for anything else.
bool scalar_json(const pickle::Document& doc, pickle::Ref r, nlohmann::json& out, std::string& why) {
  const pickle::Value& v = doc.at(r);
  switch (v.kind) {
    case Kind::None: out = nullptr; return true;
    case Kind::Bool: out = v.b; return true;
    case Kind::Int: out = v.i; return true;
    case Kind::Float: out = v.f; return true;
    case Kind::Str:
      if (v.s.size() > kMaxArgsStr) why = str_cat("str of ", v.s.size(), " bytes");
      else if (!valid_utf8(v.s)) why = "str that is not valid UTF-8";
      else out = v.s;
      return why.empty();
    default: why = printable(doc.describe(r)); return false;
  }
}

// A plain value, or a list / tuple of plain values, as JSON.
bool plain_json(const pickle::Document& doc, pickle::Ref r, nlohmann::json& out, std::string& why) {
  const pickle::Value& v = doc.at(r);
  if (v.kind != Kind::List && v.kind != Kind::Tuple) return scalar_json(doc, r, out, why);
  if (v.items.size() > kMaxArgsList) {
    why = str_cat(kind_name(v.kind), " of ", v.items.size(), " items (more than ", kMaxArgsList, ")");
    return false;
  }
  out = nlohmann::json::array();
  for (pickle::Ref item : v.items) {
    nlohmann::json j;
    std::string item_why;
    if (!scalar_json(doc, item, j, item_why)) {
      why = str_cat(kind_name(v.kind), " holding a ", item_why);
      return false;
    }
    out.push_back(std::move(j));
  }
  return true;
}

// Reads the top-level "args" entry into out.args / out.args_notes. Nothing in it is executed:
// the Namespace's fields are the BUILD state the restricted reader kept as data.
void read_args(const pickle::Document& doc, const pickle::Value& root, TorchStateDict& out) {
  const pickle::Value* a = doc.dict_get(root, "args");
  if (!a) return;
  if (a->kind != Kind::Object || a->s != "argparse.Namespace") {
    out.args_notes.push_back(str_cat("top-level 'args' is a ", kind_name(a->kind),
                                     a->kind == Kind::Object ? " " + printable(a->s) : "",
                                     ", not an argparse.Namespace: not read"));
    return;
  }
  out.args = nlohmann::json::object();
  for (const auto& [name, ref] : doc.namespace_fields(*a)) {
    if (name.empty() || name.size() > 256 || !valid_utf8(name)) {
      out.args_notes.push_back(str_cat("'", printable(name), "' (not a plain field name)"));
      continue;
    }
    if (out.args.size() >= kMaxArgsFields) {
      out.args_notes.push_back(str_cat("fields after the first ", kMaxArgsFields, " (from '",
                                       printable(name), "' on)"));
      break;
    }
    nlohmann::json j;
    std::string why;
    if (plain_json(doc, ref, j, why)) out.args[name] = std::move(j);
    else out.args_notes.push_back(str_cat(printable(name), " (", why, ")"));
  }
}

class Materializer {
 public:
  Materializer(const ZipReader& zip, const pickle::Document& doc, std::string prefix)
      : zip_(zip), doc_(doc), prefix_(std::move(prefix)) {}

  at::Tensor tensor(pickle::Ref ref, const std::string& name) {
    const pickle::Value& t = doc_.at(ref);
    at::Tensor storage = load_storage(t.storage, name);
    at::Tensor view = storage.as_strided(t.sizes, t.strides, t.storage_offset);
    if (view.is_contiguous() && view.numel() == storage.numel()) return view;
    return view.clone(at::MemoryFormat::Contiguous);
  }

 private:
  at::Tensor load_storage(pickle::Ref ref, const std::string& tensor_name) {
    const pickle::Value& s = doc_.at(ref);
    auto it = cache_.find(s.s);
    if (it != cache_.end()) {
      CTFGEN_CHECK(it->second.scalar_type() == s.dtype && it->second.numel() == s.numel,
                   zip_.source(), ": storage '", s.s, "' is declared twice with different types ",
                   "or sizes (", c10::toString(it->second.scalar_type()), " x ",
                   it->second.numel(), " vs ", c10::toString(s.dtype), " x ", s.numel, ")");
      return it->second;
    }
    const std::string entry_name = prefix_ + "data/" + s.s;
    const ZipEntry* e = zip_.find(entry_name);
    CTFGEN_CHECK(e, zip_.source(), ": tensor '", tensor_name, "' uses storage '", s.s,
                 "' but the archive has no entry '", entry_name, "'");
    const uint64_t item = c10::elementSize(s.dtype);
    uint64_t bytes = 0;
    CTFGEN_CHECK(!__builtin_mul_overflow(static_cast<uint64_t>(s.numel), item, &bytes),
                 zip_.source(), ": storage '", s.s, "' size overflows");
    CTFGEN_CHECK(e->uncompressed_size == bytes, zip_.source(), ": storage '", s.s, "' (tensor '",
                 tensor_name, "') declares ", s.numel, " ", c10::toString(s.dtype),
                 " elements (", bytes, " bytes) but its entry '", entry_name, "' holds ",
                 e->uncompressed_size, " bytes");
    CTFGEN_CHECK(bytes <= zip_.size(), zip_.source(), ": storage '", s.s, "' is larger than the archive");
    at::Tensor st = at::empty({s.numel}, at::TensorOptions().dtype(s.dtype));
    zip_.read_into(*e, st.data_ptr(), bytes);
    cache_.emplace(s.s, st);
    return st;
  }

  const ZipReader& zip_;
  const pickle::Document& doc_;
  std::string prefix_;
  std::map<std::string, at::Tensor> cache_;
};

TorchStateDict read_from_zip(const ZipReader& zip, const TorchReadOptions& options) {
  TorchStateDict out;
  out.source = zip.source();
  // Find <folder>/data.pkl at the top level of the archive; the folder name varies.
  const ZipEntry* pkl = nullptr;
  std::string prefix;
  bool torchscript = false;
  for (const auto& e : zip.entries()) {
    const std::string& n = e.name;
    size_t slash = n.find('/');
    std::string rest = slash == std::string::npos ? n : n.substr(slash + 1);
    if (rest == "constants.pkl" || rest.rfind("code/", 0) == 0) torchscript = true;
    bool top = (slash == std::string::npos && n == "data.pkl") ||
               (slash != std::string::npos && rest == "data.pkl");
    if (!top) continue;
    CTFGEN_CHECK(!pkl, zip.source(), ": the archive holds more than one data.pkl ('", pkl->name,
                 "' and '", n, "')");
    pkl = &e;
    prefix = slash == std::string::npos ? "" : n.substr(0, slash + 1);
  }
  CTFGEN_CHECK(!torchscript, zip.source(),
               ": this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
               "save the model's state_dict() with torch.save instead");
  CTFGEN_CHECK(pkl, zip.source(), ": ZIP archive without a data.pkl: not a torch.save checkpoint");
  out.archive_folder = prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1);
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    CTFGEN_CHECK(bo->uncompressed_size <= 16, zip.source(), ": byteorder entry too large");
    auto b = zip.read(*bo);
    std::string order(b.begin(), b.end());
    CTFGEN_CHECK(order == "little", zip.source(), ": byte order '", order,
                 "' is not supported (only little-endian checkpoints)");
  }
  CTFGEN_CHECK(pkl->uncompressed_size <= options.limits.max_input_bytes, zip.source(), ": ",
               pkl->name, " is ", pkl->uncompressed_size, " bytes, over the limit of ",
               options.limits.max_input_bytes);
  std::vector<uint8_t> bytes = zip.read(*pkl);
  pickle::Document doc =
      pickle::parse(bytes.data(), bytes.size(), zip.source() + ":" + pkl->name, options.limits);
  out.opaque_objects = doc.opaque_names;

  const pickle::Value& root = doc.at(doc.root);
  CTFGEN_CHECK(root.kind == Kind::Dict, zip.source(), ": the checkpoint holds a ",
               doc.describe(doc.root), ", expected a dict (a state dict or {\"model\": ...})");
  for (size_t i = 0; i + 1 < root.items.size(); i += 2)
    if (doc.at(root.items[i]).kind == Kind::Str) {
      const std::string& k = doc.at(root.items[i]).s;
      if (std::find(out.top_level_keys.begin(), out.top_level_keys.end(), k) ==
          out.top_level_keys.end())
        out.top_level_keys.push_back(k);
    }
  read_args(doc, root, out);
  const pickle::Value* sd = &root;
  for (const auto& name : options.entry_order) {
    const pickle::Value* v = doc.dict_get(root, name);
    if (!v) continue;
    CTFGEN_CHECK(v->kind == Kind::Dict, zip.source(), ": entry '", name, "' is a ",
                 pickle::kind_name(v->kind), v->kind == Kind::Object ? " " + v->s : "",
                 ", not a state dict (save model.state_dict(), not the module)");
    sd = v;
    out.entry = name;
    break;
  }

  Materializer mat(zip, doc, prefix);
  std::map<std::string, size_t> index;  // later duplicates replace earlier ones, as in Python
  for (size_t i = 0; i + 1 < sd->items.size(); i += 2) {
    const pickle::Value& k = doc.at(sd->items[i]);
    pickle::Ref vref = sd->items[i + 1];
    if (k.kind != Kind::Str) {
      out.skipped.push_back(str_cat(doc.describe(sd->items[i]), " (non-string key)"));
      continue;
    }
    if (doc.at(vref).kind != Kind::Tensor) {
      out.skipped.push_back(str_cat(k.s, " (", doc.describe(vref), ")"));
      continue;
    }
    at::Tensor t = mat.tensor(vref, k.s);
    auto it = index.find(k.s);
    if (it != index.end()) {
      out.tensors[it->second].second = t;
    } else {
      index.emplace(k.s, out.tensors.size());
      out.tensors.emplace_back(k.s, t);
    }
  }
  CTFGEN_CHECK(!out.tensors.empty(), zip.source(), ": no tensors found in ",
               out.entry.empty() ? "the top-level dict" : "entry '" + out.entry + "'",
               " (top-level keys: ", [&] {
                 std::string s;
                 for (const auto& k : out.top_level_keys) s += (s.empty() ? "" : ", ") + k;
                 return s;
               }(), ")");
  return out;
}

}  // namespace

bool looks_like_torch_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  uint8_t head[4] = {0, 0, 0, 0};
  size_t n = std::fread(head, 1, 4, f);
  std::fclose(f);
  return ZipReader::looks_like_zip(head, n) || looks_like_legacy_torch(head, n);
}

TorchStateDict read_torch_state_dict(const std::string& path, const TorchReadOptions& options) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  CTFGEN_CHECK(f, path, ": cannot open");
  uint8_t head[16] = {};
  size_t n = std::fread(head, 1, sizeof(head), f);
  std::fclose(f);
  if (!ZipReader::looks_like_zip(head, n)) refuse_non_zip(head, n, path);
  ZipReader zip = ZipReader::open_file(path);
  return read_from_zip(zip, options);
}

TorchStateDict read_torch_state_dict_from_memory(const uint8_t* data, size_t size,
                                                 const std::string& source,
                                                 const TorchReadOptions& options) {
  if (!ZipReader::looks_like_zip(data, size)) refuse_non_zip(data, size, source);
  ZipReader zip = ZipReader::from_memory(data, size, source);
  return read_from_zip(zip, options);
}

// ---------------------------------------------------------------------------------------------
// Detection

void LlamaGenImportOptions::validate() const {
  CTFGEN_CHECK_USAGE(kind == "auto" || kind == "vq" || kind == "gpt",
                     "import: kind must be auto, vq or gpt, got '", kind, "'");
  CTFGEN_CHECK_USAGE(image_size == 0 || (image_size >= 16 && image_size <= 8192),
                     "import: image_size must be 0 (infer) or in [16, 8192], got ", image_size);
  CTFGEN_CHECK_USAGE(token_downsample >= 0 && token_downsample <= 1024,
                     "import: token_downsample must be 0 (infer) or in [1, 1024], got ",
                     token_downsample);
  // With either one inferred, detection checks the pair once both are known.
  CTFGEN_CHECK_USAGE(image_size == 0 || token_downsample == 0 || image_size % token_downsample == 0,
                     "import: image_size ", image_size, " is not a multiple of token_downsample ",
                     token_downsample);
  CTFGEN_CHECK_USAGE(n_head >= 0 && n_head <= 4096, "import: n_head must be in [0, 4096], got ",
                     n_head);
}

bool is_ignored_llamagen_key(const std::string& name) {
  return name == "freqs_cis" || name.find(".kv_cache.") != std::string::npos ||
         name.rfind("kv_cache.", 0) == 0;
}

namespace {

class TensorTable {
 public:
  TensorTable(const NamedTensors& t, std::string what) : what_(std::move(what)) {
    for (const auto& [n, v] : t) map_[n] = v;
  }
  bool has(const std::string& n) const { return map_.count(n) > 0; }
  const at::Tensor& get(const std::string& n) {
    auto it = map_.find(n);
    CTFGEN_CHECK(it != map_.end(), what_, ": missing tensor '", n, "'");
    used_.insert(n);
    return it->second;
  }
  // Checks the shape; -1 matches anything.
  const at::Tensor& expect(const std::string& n, const std::vector<int64_t>& shape) {
    const at::Tensor& t = get(n);
    bool ok = t.dim() == static_cast<int64_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || t.size(i) == shape[i];
    if (!ok) {
      std::string s = "[";
      for (size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
      throw Error(str_cat(what_, ": tensor '", n, "' has shape ", t.sizes(), ", expected ", s, "]"));
    }
    return t;
  }
  // Distinct integer indices i of names "<prefix><i>.*"; must be 0..n-1.
  int64_t count(const std::string& prefix) const {
    std::set<int64_t> idx;
    for (const auto& [n, v] : map_) {
      if (n.rfind(prefix, 0) != 0) continue;
      size_t end = n.find('.', prefix.size());
      std::string num = n.substr(prefix.size(), end - prefix.size());
      if (num.empty() || num.size() > 6 || num.find_first_not_of("0123456789") != std::string::npos)
        continue;
      idx.insert(std::stoll(num));
    }
    int64_t k = 0;
    for (int64_t i : idx) {
      CTFGEN_CHECK(i == k, what_, ": '", prefix, "N' blocks are not numbered 0..", idx.size() - 1,
                   " (block ", k, " is missing)");
      ++k;
    }
    return k;
  }
  void mark(const std::string& n) { used_.insert(n); }
  // Every tensor must have been used.
  void check_all_used() const {
    std::string extra;
    int shown = 0;
    for (const auto& [n, v] : map_)
      if (!used_.count(n) && shown++ < 10) extra += (extra.empty() ? "" : ", ") + n;
    CTFGEN_CHECK(extra.empty(), what_, ": unexpected tensors: ", extra);
  }

 private:
  std::string what_;
  std::map<std::string, at::Tensor> map_;
  std::set<std::string> used_;
};

std::string ints(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// One ResnetBlock "<p>." from c_in to c_out; returns c_out.
int64_t check_resblock(TensorTable& t, const std::string& p, int64_t c_in) {
  int64_t c_out = t.expect(p + "conv1.weight", {-1, c_in, 3, 3}).size(0);
  t.expect(p + "conv1.bias", {c_out});
  t.expect(p + "norm1.weight", {c_in});
  t.expect(p + "norm1.bias", {c_in});
  t.expect(p + "norm2.weight", {c_out});
  t.expect(p + "norm2.bias", {c_out});
  t.expect(p + "conv2.weight", {c_out, c_out, 3, 3});
  t.expect(p + "conv2.bias", {c_out});
  if (c_in != c_out) {
    t.expect(p + "nin_shortcut.weight", {c_out, c_in, 1, 1});
    t.expect(p + "nin_shortcut.bias", {c_out});
  }
  return c_out;
}

void check_attn(TensorTable& t, const std::string& p, int64_t c) {
  t.expect(p + "norm.weight", {c});
  t.expect(p + "norm.bias", {c});
  for (const char* n : {"q", "k", "v", "proj_out"}) {
    t.expect(p + n + ".weight", {c, c, 1, 1});
    t.expect(p + n + ".bias", {c});
  }
}

void check_conv(TensorTable& t, const std::string& p, int64_t c_out, int64_t c_in, int64_t k) {
  t.expect(p + ".weight", {c_out, c_in, k, k});
  t.expect(p + ".bias", {c_out});
}

// The checkpoint's saved training arguments as detection reads them (TorchStateDict::args).
class SavedArgs {
 public:
  SavedArgs(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}
  // An integer field; nullopt when absent or None. Error for another type.
  std::optional<int64_t> integer(const char* name) const {
    const nlohmann::json* v = find(name);
    if (!v) return std::nullopt;
    CTFGEN_CHECK(v->is_number_integer(), file_, ": args.", name, " is ", printable(v->dump()),
                 ", expected an integer");
    return v->get<int64_t>();
  }
  // A str field; nullopt when absent or None. Error for another type.
  std::optional<std::string> text(const char* name) const {
    const nlohmann::json* v = find(name);
    if (!v) return std::nullopt;
    CTFGEN_CHECK(v->is_string(), file_, ": args.", name, " is ", printable(v->dump()),
                 ", expected a str");
    return v->get<std::string>();
  }
  // args.<name>, when present, must equal what the weights say (`weights`: the tensor that says
  // it). Agreements are listed in `agreed` for a note.
  void must_agree(const char* name, int64_t value, const std::string& weights,
                  std::vector<std::string>& agreed) const {
    auto v = integer(name);
    if (!v) return;
    CTFGEN_CHECK(*v == value, file_, ": args.", name, " is ", *v, " but the weights say ", value,
                 " (", weights, ")");
    agreed.push_back(str_cat(name, " ", *v));
  }

 private:
  const nlohmann::json* find(const char* name) const {
    if (!j_.is_object()) return nullptr;
    auto it = j_.find(name);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  const nlohmann::json& j_;
  std::string file_;
};

std::string joined(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// LlamaGen's tokenizer models by name (its vq_model.py VQ_models): the name fixes the level
// structure; codebook size and dimension are separate arguments (codebook_size,
// codebook_embed_dim), so a "VQ-16" may have another codebook.
struct VQArch {
  const char* name;
  std::vector<int64_t> ch_mult;
};
const VQArch kVQArchs[] = {{"VQ-16", {1, 1, 2, 2, 4}}, {"VQ-8", {1, 2, 2, 4}}};

LlamaGenDetection detect_vq(TensorTable& t, const std::string& file_name,
                            const LlamaGenImportOptions& options, const SavedArgs& args) {
  LlamaGenDetection d;
  d.kind = "vq";
  const at::Tensor& conv_in = t.expect("encoder.conv_in.weight", {-1, -1, 3, 3});
  const int64_t ch = conv_in.size(0), in_ch = conv_in.size(1);
  t.expect("encoder.conv_in.bias", {ch});
  const at::Tensor& emb = t.expect("quantize.embedding.weight", {-1, -1});
  const int64_t V = emb.size(0), D = emb.size(1);
  const int64_t z = t.expect("quant_conv.weight", {D, -1, 1, 1}).size(1);
  t.expect("quant_conv.bias", {D});
  check_conv(t, "post_quant_conv", z, D, 1);
  if (t.has("quantize.codebook_used")) t.expect("quantize.codebook_used", {-1});

  // Encoder: levels from the highest resolution down.
  const int64_t levels = t.count("encoder.conv_blocks.");
  CTFGEN_CHECK(levels >= 1, "VQ: no encoder.conv_blocks found");
  const int64_t enc_res = t.count("encoder.conv_blocks.0.res.");
  std::vector<int64_t> enc_mult;
  int64_t c = ch;
  for (int64_t i = 0; i < levels; ++i) {
    const std::string p = str_cat("encoder.conv_blocks.", i, ".");
    CTFGEN_CHECK(t.count(p + "res.") == enc_res, "VQ: encoder level ", i, " has ",
                 t.count(p + "res."), " ResnetBlocks, level 0 has ", enc_res);
    for (int64_t r = 0; r < enc_res; ++r) c = check_resblock(t, str_cat(p, "res.", r, "."), c);
    CTFGEN_CHECK(c % ch == 0, "VQ: encoder level ", i, " width ", c, " is not a multiple of ", ch);
    enc_mult.push_back(c / ch);
    const int64_t attn = t.count(p + "attn.");
    for (int64_t a = 0; a < attn; ++a) check_attn(t, str_cat(p, "attn.", a, "."), c);
    if (i + 1 < levels) check_conv(t, p + "downsample.conv", c, c, 3);
  }
  check_resblock(t, "encoder.mid.0.", c);
  check_attn(t, "encoder.mid.1.", c);
  check_resblock(t, "encoder.mid.2.", c);
  t.expect("encoder.norm_out.weight", {c});
  t.expect("encoder.norm_out.bias", {c});
  check_conv(t, "encoder.conv_out", z, c, 3);

  // Decoder: conv_blocks.0 is the lowest resolution.
  CTFGEN_CHECK(t.count("decoder.conv_blocks.") == levels, "VQ: decoder has ",
               t.count("decoder.conv_blocks."), " levels, encoder ", levels);
  const int64_t dec_res = t.count("decoder.conv_blocks.0.res.");
  int64_t dc = t.expect("decoder.conv_in.weight", {-1, z, 3, 3}).size(0);
  t.expect("decoder.conv_in.bias", {dc});
  check_resblock(t, "decoder.mid.0.", dc);
  check_attn(t, "decoder.mid.1.", dc);
  check_resblock(t, "decoder.mid.2.", dc);
  std::vector<int64_t> dec_mult(levels);
  for (int64_t i = 0; i < levels; ++i) {
    const std::string p = str_cat("decoder.conv_blocks.", i, ".");
    CTFGEN_CHECK(t.count(p + "res.") == dec_res, "VQ: decoder level ", i, " has ",
                 t.count(p + "res."), " ResnetBlocks, level 0 has ", dec_res);
    for (int64_t r = 0; r < dec_res; ++r) dc = check_resblock(t, str_cat(p, "res.", r, "."), dc);
    CTFGEN_CHECK(dc % ch == 0, "VQ: decoder level ", i, " width ", dc, " is not a multiple of ", ch);
    dec_mult[levels - 1 - i] = dc / ch;
    const int64_t attn = t.count(p + "attn.");
    for (int64_t a = 0; a < attn; ++a) check_attn(t, str_cat(p, "attn.", a, "."), dc);
    if (i + 1 < levels) check_conv(t, p + "upsample.conv", dc, dc, 3);
  }
  t.expect("decoder.norm_out.weight", {dc});
  t.expect("decoder.norm_out.bias", {dc});
  check_conv(t, "decoder.conv_out", in_ch, dc, 3);
  CTFGEN_CHECK(dc == ch, "VQ: decoder's last level has ", dc, " channels, encoder's first ", ch);

  const int64_t factor = int64_t{1} << (levels - 1);
  const bool is16 = levels == 5 && enc_mult == std::vector<int64_t>{1, 1, 2, 2, 4};
  const bool is8 = levels == 4 && enc_mult == std::vector<int64_t>{1, 2, 2, 4};
  const bool full = ch == 128 && z == 256 && V == 16384 && D == 8 && in_ch == 3 && enc_res == 2 &&
                    dec_res == 3 && dec_mult == enc_mult;
  d.preset = full && is16 ? "VQ-16" : full && is8 ? "VQ-8" : "custom";
  d.notes.push_back(str_cat("VQ tokenizer: ", levels, " encoder levels (ch_mult ", ints(enc_mult),
                            ") -> ", factor, "x down-sampling, ",
                            d.preset == "custom" ? "no LlamaGen preset matches (custom sizes)"
                                                 : "LlamaGen " + d.preset));
  d.notes.push_back(str_cat("codebook ", V, " x ", D, ", base channels ", ch, ", z_channels ", z,
                            ", ResnetBlocks per level ", enc_res, " (encoder) / ", dec_res,
                            " (decoder)"));

  // Saved args that restate the weights must agree with them.
  std::vector<std::string> agreed;
  args.must_agree("codebook_size", V, str_cat("quantize.embedding.weight has ", V, " rows"), agreed);
  args.must_agree("codebook_embed_dim", D,
                  str_cat("quantize.embedding.weight has ", D, " columns"), agreed);
  if (auto model = args.text("vq_model")) {
    const VQArch* arch = nullptr;
    for (const auto& a : kVQArchs)
      if (*model == a.name) arch = &a;
    if (arch) {
      CTFGEN_CHECK(enc_mult == arch->ch_mult && dec_mult == arch->ch_mult, file_name,
                   ": args.vq_model is ", *model, " (ch_mult ", ints(arch->ch_mult), ", ",
                   int64_t{1} << (arch->ch_mult.size() - 1),
                   "x down-sampling) but the weights have encoder ch_mult ", ints(enc_mult),
                   " and decoder ch_mult ", ints(dec_mult), " (", factor, "x down-sampling)");
      agreed.push_back(str_cat("vq_model ", *model, " (level structure)"));
    } else {
      d.notes.push_back(str_cat("args.vq_model '", printable(*model),
                                "' is not a LlamaGen tokenizer this importer knows (VQ-16, VQ-8); "
                                "the weights decide"));
    }
  }
  if (!agreed.empty()) d.notes.push_back("args agree with the weights: " + joined(agreed));

  // Image size: explicit option > args.image_size > 256 (recorded in the config).
  int64_t image_size = 256;
  std::string size_note = "default";
  d.sources["image_size"] = "default";
  const auto args_size = args.integer("image_size");
  if (options.image_size > 0) {
    image_size = options.image_size;
    d.sources["image_size"] = "option";
    size_note = "from --image-size";
    if (args_size && *args_size != image_size)
      size_note += str_cat(", overriding args.image_size ", *args_size);
  } else if (args_size) {
    CTFGEN_CHECK(*args_size >= 16 && *args_size <= 8192, file_name, ": args.image_size ",
                 *args_size, " is outside [16, 8192]");
    image_size = *args_size;
    d.sources["image_size"] = "args";
    size_note = "from args.image_size";
  }
  if (image_size % factor != 0) {
    const std::string msg = str_cat(file_name, ": image size ", image_size, " (", size_note,
                                    ") is not a multiple of the tokenizer's ", factor,
                                    "x down-sampling");
    if (options.image_size > 0) throw UsageError(msg);
    throw Error(msg);
  }
  d.notes.push_back(str_cat("image size ", image_size, " (", size_note, ")"));
  d.config = {{"codebook_size", V},          {"codebook_dim", D},
              {"in_channels", in_ch},        {"base_channels", ch},
              {"encoder_ch_mult", enc_mult}, {"decoder_ch_mult", dec_mult},
              {"encoder_num_res_blocks", enc_res}, {"decoder_num_res_blocks", dec_res},
              {"z_channels", z},             {"image_size", image_size}};
  return d;
}

struct GPTPreset {
  const char* name;
  int64_t dim, n_layer, n_head;
};
constexpr GPTPreset kGPTPresets[] = {
    {"GPT-B", 768, 12, 12},    {"GPT-L", 1024, 24, 16}, {"GPT-XL", 1280, 36, 20},
    {"GPT-XXL", 1536, 48, 24}, {"GPT-3B", 3200, 24, 32},
};

int64_t llamagen_ffn_hidden(int64_t dim) {
  int64_t h = 2 * (4 * dim) / 3;
  return (h + 255) / 256 * 256;
}

// Image side from "..._256.pt" / "c2i_XL_384.pt": the last '_'/'-'-delimited number in the
// file's stem that is a multiple of the token down-sampling.
int64_t image_size_from_name(const std::string& file_name, int64_t downsample) {
  std::string stem = std::filesystem::path(file_name).stem().string();
  static const std::regex num(R"((?:^|[_\-.])(\d{2,5})(?=$|[_\-.]))");
  int64_t found = 0;
  for (auto it = std::sregex_iterator(stem.begin(), stem.end(), num); it != std::sregex_iterator();
       ++it) {
    int64_t v = std::stoll((*it)[1].str());
    if (v >= 64 && v <= 4096 && v % downsample == 0) found = v;
  }
  return found;
}

// LlamaGen's GPT names (its gpt.py GPT_models); kGPTPresets holds the sizes of the ones with
// released c2i weights.
constexpr const char* kLlamaGenGPTNames[] = {"GPT-B",    "GPT-L",  "GPT-XL", "GPT-XXL",
                                             "GPT-XXXL", "GPT-1B", "GPT-3B", "GPT-7B"};

LlamaGenDetection detect_gpt(TensorTable& t, const std::string& file_name,
                             const LlamaGenImportOptions& options, const SavedArgs& args) {
  LlamaGenDetection d;
  d.kind = "gpt";
  CTFGEN_CHECK(!t.has("cls_embedding.cap_proj.fc1.weight"),
               "GPT: this is a text-to-image LlamaGen GPT (cls_embedding.cap_proj); only "
               "class-conditional (c2i) GPTs are supported");
  const at::Tensor& tok = t.expect("tok_embeddings.weight", {-1, -1});
  const int64_t V = tok.size(0), D = tok.size(1);
  const int64_t classes = t.expect("cls_embedding.embedding_table.weight", {-1, D}).size(0) - 1;
  CTFGEN_CHECK(classes >= 1, "GPT: cls_embedding.embedding_table has no class rows");
  t.expect("norm.weight", {D});
  t.expect("output.weight", {V, D});
  const int64_t L = t.count("layers.");
  CTFGEN_CHECK(L >= 1, "GPT: no layers.N blocks found");
  const int64_t hidden = t.expect("layers.0.feed_forward.w1.weight", {-1, D}).size(0);
  for (int64_t i = 0; i < L; ++i) {
    const std::string p = str_cat("layers.", i, ".");
    t.expect(p + "attention.wqkv.weight", {3 * D, D});
    t.expect(p + "attention.wo.weight", {D, D});
    t.expect(p + "feed_forward.w1.weight", {hidden, D});
    t.expect(p + "feed_forward.w3.weight", {hidden, D});
    t.expect(p + "feed_forward.w2.weight", {D, hidden});
    t.expect(p + "attention_norm.weight", {D});
    t.expect(p + "ffn_norm.weight", {D});
  }
  CTFGEN_CHECK(hidden == llamagen_ffn_hidden(D), "GPT: FFN width ", hidden,
               " does not follow LlamaGen's rule for dim ", D, " (expected ",
               llamagen_ffn_hidden(D), " = floor(8*dim/3) rounded up to a multiple of 256)");

  d.preset = "custom";
  int64_t n_head = 0;
  for (const auto& p : kGPTPresets)
    if (p.dim == D && p.n_layer == L) {
      d.preset = p.name;
      n_head = p.n_head;
    }
  std::string head_note;
  if (options.n_head > 0) {
    n_head = options.n_head;
    head_note = "from --n-head";
    d.sources["n_head"] = "option";
  } else if (n_head > 0) {
    head_note = "from the preset";
    d.sources["n_head"] = "preset";
  } else {
    d.sources["n_head"] = "default";
    CTFGEN_CHECK(D % 64 == 0, "GPT: dim ", D, " / ", L,
                 " layers matches no LlamaGen preset and is not a multiple of 64; the head count "
                 "cannot be read from the weights: give it (--n-head)");
    n_head = D / 64;
    head_note = "assumed head_dim 64 (no preset matches; override with --n-head)";
  }
  CTFGEN_CHECK_USAGE(D % n_head == 0 && (D / n_head) % 4 == 0, "GPT: n_head ", n_head,
                     " does not divide dim ", D, " into a head_dim that is a multiple of 4");

  // Saved args that restate the weights must agree with them. LlamaGen names the GPT's vocab
  // vocab_size when training and codebook_size when sampling; both are checked when present.
  if (auto type = args.text("gpt_type"))
    CTFGEN_CHECK(*type == "c2i", file_name, ": args.gpt_type is '", printable(*type),
                 "'; only class-conditional (c2i) GPTs are supported");
  std::vector<std::string> agreed, args_notes;  // args notes follow the shape notes
  if (auto model = args.text("gpt_model")) {
    bool known = false;
    for (const char* n : kLlamaGenGPTNames) known = known || *model == n;
    bool has_preset = false;
    for (const auto& p : kGPTPresets) has_preset = has_preset || *model == p.name;
    if (has_preset) {
      // A preset name fixes dim and layers; shapes of another preset, or of none, contradict it.
      CTFGEN_CHECK(*model == d.preset, file_name, ": args.gpt_model is ", *model,
                   " but the weights (dim ", D, ", ", L, " layers) are ",
                   d.preset == "custom" ? std::string("custom sizes that match no LlamaGen preset")
                                        : "LlamaGen " + d.preset);
      agreed.push_back("gpt_model " + *model);
    } else {
      args_notes.push_back(str_cat("args.gpt_model '", printable(*model), "' is ",
                                known ? "a LlamaGen model without a preset here"
                                      : "not a LlamaGen model name",
                                " (presets: GPT-B, GPT-L, GPT-XL, GPT-XXL, GPT-3B); the weights decide"));
    }
  }
  const std::string vocab_what = str_cat("tok_embeddings.weight has ", V, " rows");
  args.must_agree("vocab_size", V, vocab_what, agreed);
  args.must_agree("codebook_size", V, vocab_what, agreed);
  args.must_agree("num_classes", classes,
                  str_cat("cls_embedding.embedding_table.weight has ", classes + 1, " rows = ",
                          classes, " classes + the unconditional one"),
                  agreed);
  if (auto n = args.integer("cls_token_num")) {
    CTFGEN_CHECK(*n == 1, file_name, ": args.cls_token_num is ", *n,
                 " but a c2i GPT has one class token (ctfgen's GPT and the weights' "
                 "cls_embedding give one per image)");
    agreed.push_back("cls_token_num 1");
  }
  if (!agreed.empty()) args_notes.push_back("args agree with the weights: " + joined(agreed));

  // The block size is not in the weights. Token down-sampling: explicit option >
  // args.downsample_size > 16. Image size: explicit option > args.image_size > the file name >
  // 256; the file name and args.image_size must not disagree unless the option decides.
  int64_t downsample = 16;
  std::string ds_note = "default";
  d.sources["token_downsample"] = "default";
  const auto args_ds = args.integer("downsample_size");
  if (options.token_downsample > 0) {
    downsample = options.token_downsample;
    d.sources["token_downsample"] = "option";
    ds_note = "from --token-downsample";
    if (args_ds && *args_ds != downsample)
      ds_note += str_cat(", overriding args.downsample_size ", *args_ds);
  } else if (args_ds) {
    CTFGEN_CHECK(*args_ds >= 1 && *args_ds <= 1024, file_name, ": args.downsample_size ",
                 *args_ds, " is outside [1, 1024]");
    downsample = *args_ds;
    d.sources["token_downsample"] = "args";
    ds_note = "from args.downsample_size";
  }

  const std::string base = basename_of(file_name);
  const int64_t name_size = image_size_from_name(file_name, downsample);
  const auto args_size = args.integer("image_size");
  int64_t image_size = 0;
  std::string size_note;
  if (options.image_size > 0) {
    image_size = options.image_size;
    d.sources["image_size"] = "option";
    size_note = "from --image-size";
    std::vector<std::string> overridden;
    if (args_size && *args_size != image_size)
      overridden.push_back(str_cat("args.image_size ", *args_size));
    if (name_size > 0 && name_size != image_size)
      overridden.push_back(str_cat(name_size, " from the file name '", base, "'"));
    if (!overridden.empty()) size_note += ", overriding " + joined(overridden, " and ");
  } else if (args_size) {
    CTFGEN_CHECK(*args_size >= 16 && *args_size <= 8192, file_name, ": args.image_size ",
                 *args_size, " is outside [16, 8192]");
    CTFGEN_CHECK(name_size == 0 || name_size == *args_size, file_name, ": the file name '", base,
                 "' says ", name_size, "px images but args.image_size is ", *args_size,
                 "; give --image-size to choose");
    image_size = *args_size;
    d.sources["image_size"] = "args";
    size_note = name_size > 0 ? "from args.image_size; the file name agrees" : "from args.image_size";
  } else if (name_size > 0) {
    image_size = name_size;
    d.sources["image_size"] = "file name";
    size_note = str_cat("inferred from the file name '", base, "'");
  } else {
    image_size = 256;
    d.sources["image_size"] = "default";
    size_note = "default (block size cannot be read from the weights; give --image-size)";
  }
  if (image_size % downsample != 0) {
    const std::string msg = str_cat(file_name, ": image size ", image_size, " (", size_note,
                                    ") is not a multiple of the token down-sampling ", downsample,
                                    " (", ds_note, ")");
    if (options.image_size > 0) throw UsageError(msg);  // the user's size does not fit
    throw Error(msg);
  }
  const int64_t grid = image_size / downsample;
  const int64_t block = grid * grid;

  d.notes.push_back(str_cat("c2i GPT: dim ", D, ", ", L, " layers -> ",
                            d.preset == "custom" ? "no LlamaGen preset matches (custom sizes)"
                                                 : "LlamaGen " + d.preset));
  d.notes.push_back(str_cat("n_head ", n_head, " (", head_note, "), FFN hidden ", hidden));
  d.notes.push_back(str_cat("vocab ", V, " (from tok_embeddings), ", classes, " classes"));
  d.notes.push_back(str_cat("block size ", block, " = ", grid, "x", grid, " tokens for ",
                            image_size, "px images (", size_note, ") at ", downsample,
                            " pixels per token (", ds_note, ")"));
  d.notes.insert(d.notes.end(), args_notes.begin(), args_notes.end());
  d.config = {{"dim", D},         {"n_layer", L},           {"n_head", n_head},
              {"num_classes", classes}, {"block_size", block}, {"vocab_size", V}};
  return d;
}

}  // namespace

LlamaGenDetection detect_llamagen(const NamedTensors& tensors, const std::string& file_name,
                                  const LlamaGenImportOptions& options, const nlohmann::json& args) {
  options.validate();
  const SavedArgs saved(args, file_name);
  NamedTensors kept;
  for (const auto& nt : tensors)
    if (!is_ignored_llamagen_key(nt.first)) kept.push_back(nt);
  TensorTable vq_t(kept, file_name + " (LlamaGen VQ)");
  TensorTable gpt_t(kept, file_name + " (LlamaGen GPT)");
  const bool vq_like = vq_t.has("quantize.embedding.weight") || vq_t.has("encoder.conv_in.weight");
  const bool gpt_like = gpt_t.has("tok_embeddings.weight") || gpt_t.has("layers.0.attention.wqkv.weight");
  std::string kind = options.kind;
  if (kind == "auto") {
    CTFGEN_CHECK(vq_like != gpt_like, file_name, ": ",
                 vq_like ? "looks like both a VQ tokenizer and a GPT"
                         : "is neither a LlamaGen VQ tokenizer (quantize.embedding.weight, "
                           "encoder.*) nor a LlamaGen GPT (tok_embeddings.weight, layers.*)",
                 "; first keys: ", [&] {
                   std::string s;
                   for (size_t i = 0; i < kept.size() && i < 5; ++i)
                     s += (i ? ", " : "") + kept[i].first;
                   return s;
                 }());
    kind = vq_like ? "vq" : "gpt";
  } else {
    CTFGEN_CHECK(kind == "vq" ? vq_like : gpt_like, file_name, ": expected a LlamaGen ",
                 kind == "vq" ? "VQ tokenizer" : "GPT", " but found ",
                 vq_like ? "a VQ tokenizer" : gpt_like ? "a GPT" : "neither");
  }
  LlamaGenDetection d;
  if (kind == "vq") {
    d = detect_vq(vq_t, file_name, options, saved);
    vq_t.check_all_used();
  } else {
    d = detect_gpt(gpt_t, file_name, options, saved);
    gpt_t.check_all_used();
  }
  return d;
}

LlamaGenImport import_llamagen(const std::string& path, const LlamaGenImportOptions& options) {
  options.validate();
  LlamaGenImport out;
  out.raw_info = read_torch_state_dict(path, options.read);
  std::set<std::string> stored_dtypes;
  for (auto& [name, t] : out.raw_info.tensors) {
    if (is_ignored_llamagen_key(name)) {
      out.ignored.push_back(name);
      continue;
    }
    stored_dtypes.insert(c10::toString(t.scalar_type()));
    if (!options.keep_dtype && t.is_floating_point() && t.scalar_type() != at::kFloat)
      t = t.to(at::kFloat);
    out.tensors.emplace_back(name, std::move(t));
  }
  out.raw_info.tensors.clear();
  const TorchStateDict& raw = out.raw_info;
  out.detection = detect_llamagen(out.tensors, path, options, raw.args);
  auto& notes = out.detection.notes;
  std::vector<std::string> first{str_cat(
      "state dict from ",
      raw.entry.empty() ? "the whole file (bare state dict)" : "entry '" + raw.entry + "'", ", ",
      out.tensors.size(), " tensors")};
  if (raw.args.is_object())
    first.push_back(str_cat("args: ", raw.args.size(), " plain fields of the saved argparse.Namespace",
                            raw.args_notes.empty() ? "" : "; left out: " + joined(raw.args_notes)));
  else if (!raw.args_notes.empty())
    first.push_back("args: " + joined(raw.args_notes));
  notes.insert(notes.begin(), first.begin(), first.end());
  if (!out.ignored.empty())
    notes.push_back(str_cat("ignored ", out.ignored.size(), " tensors (freqs_cis / kv_cache)"));
  std::string dtypes;
  for (const auto& s : stored_dtypes) dtypes += (dtypes.empty() ? "" : ", ") + s;
  notes.push_back(str_cat("stored dtype ", dtypes,
                          options.keep_dtype ? " (kept)" : " (converted to Float)"));
  std::vector<std::string> opaque;  // names as the file claims them, made safe for JSON
  for (const auto& n : out.raw_info.opaque_objects) opaque.push_back(printable(n));
  out.meta = {{"imported_from", basename_of(path)},
              {"llamagen_preset", out.detection.preset},
              {"llamagen_entry", out.raw_info.entry},
              {"stored_dtypes", dtypes},
              {"ignored_tensors", out.ignored},
              {"opaque_objects", opaque},
              {"llamagen_sources", out.detection.sources},
              {"llamagen_args", out.raw_info.args},
              {"notes", out.detection.notes}};
  return out;
}

LlamaGenImport import_llamagen_to_component(const std::string& path, const std::string& out_path,
                                            const LlamaGenImportOptions& options) {
  LlamaGenImport imp = import_llamagen(path, options);
  save_component(out_path, imp.detection.kind, imp.detection.config, imp.tensors, imp.meta);
  return imp;
}

Component load_component_or_torch(const std::string& path, const std::string& expected_kind,
                                  const LlamaGenImportOptions& options) {
  if (!looks_like_torch_file(path)) return load_component(path, expected_kind);
  LlamaGenImportOptions opt = options;
  if (!expected_kind.empty()) {
    CTFGEN_CHECK(expected_kind == "vq" || expected_kind == "gpt", path,
                 ": a PyTorch checkpoint can stand in only for a 'vq' or 'gpt' component, not '",
                 expected_kind, "'");
    opt.kind = expected_kind;
  }
  LlamaGenImport imp = import_llamagen(path, opt);
  for (const auto& n : imp.detection.notes) log::info(basename_of(path), ": ", n);
  Component c;
  c.path = path;
  c.kind = imp.detection.kind;
  c.config = imp.detection.config;
  c.meta = imp.meta;
  c.file.source = path;
  c.file.metadata = {{"format", "ctfgen"},
                     {"format_version", std::to_string(kFormatVersion)},
                     {"kind", c.kind},
                     {"config", c.config.dump()},
                     {"meta", c.meta.dump()}};
  c.file.tensors = std::move(imp.tensors);
  return c;
}

}  // namespace ctfgen::io
