#include "io/npy.h"

#include <torch/torch.h>

#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "core/shape.h"

namespace ctfgen::io {
namespace {

struct NpyType {
  const char* descr;
  at::ScalarType type;
  size_t size;
};
// The first spelling of each type is what the writer emits.
constexpr NpyType kTypes[] = {
    {"<f8", at::kDouble, 8}, {"<f4", at::kFloat, 4}, {"<f2", at::kHalf, 2}, {"<i8", at::kLong, 8},
    {"<i4", at::kInt, 4},    {"<i2", at::kShort, 2}, {"|i1", at::kChar, 1}, {"|u1", at::kByte, 1},
    {"|b1", at::kBool, 1},   {"<i1", at::kChar, 1},  {"<u1", at::kByte, 1}, {"<b1", at::kBool, 1}};

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMaxDims = 32;

// A strict parser of the header dict literal.
class HeaderParser {
 public:
  HeaderParser(const char* s, size_t n, const std::string& source) : s_(s), n_(n), source_(source) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    skip_ws();
    expect('{');
    skip_ws();
    while (peek() != '}') {
      std::string key = string_literal();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        fail_if(seen_descr, "key 'descr' appears twice");
        descr = string_literal();
        seen_descr = true;
      } else if (key == "fortran_order") {
        fail_if(seen_fortran, "key 'fortran_order' appears twice");
        fortran = boolean();
        seen_fortran = true;
      } else if (key == "shape") {
        fail_if(seen_shape, "key 'shape' appears twice");
        shape = tuple();
        seen_shape = true;
      } else {
        fail(str_cat("unexpected key '", key, "'"));
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
        skip_ws();
      } else {
        fail_if(peek() != '}', "expected ',' or '}'");
      }
    }
    ++i_;
    fail_if(!seen_descr || !seen_fortran || !seen_shape,
            "header must have the keys 'descr', 'fortran_order' and 'shape'");
    for (; i_ < n_; ++i_) fail_if(s_[i_] != ' ' && s_[i_] != '\n', "unexpected characters after the dict");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(str_cat(source_, ": bad .npy header at character ", i_, ": ", what));
  }
  void fail_if(bool cond, const char* what) const {
    if (cond) fail(what);
  }
  char peek() const { return i_ < n_ ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < n_ && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(str_cat("expected '", c, "'"));
    ++i_;
  }
  std::string string_literal() {
    const char q = peek();
    fail_if(q != '\'' && q != '"', "expected a quoted string");
    ++i_;
    std::string out;
    while (i_ < n_ && s_[i_] != q) {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      fail_if(c == '\\' || c < 0x20 || c > 0x7e, "unsupported character in a string");
      out.push_back(s_[i_++]);
      fail_if(out.size() > 64, "string too long");
    }
    expect(q);
    return out;
  }
  bool word(const char* w) {
    const size_t len = std::strlen(w);
    if (n_ - i_ >= len && std::memcmp(s_ + i_, w, len) == 0) {
      i_ += len;
      return true;
    }
    return false;
  }
  bool boolean() {
    if (word("True")) return true;
    if (word("False")) return false;
    fail("expected True or False");
  }
  int64_t integer() {
    fail_if(peek() < '0' || peek() > '9', "expected a non-negative integer");
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, static_cast<uint64_t>(peek() - '0'), &v) ||
          v > static_cast<uint64_t>(INT64_MAX))
        fail("dimension too large");
      ++i_;
    }
    return static_cast<int64_t>(v);
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> out;
    expect('(');
    skip_ws();
    if (peek() == ')') {
      ++i_;
      return out;
    }
    while (true) {
      out.push_back(integer());
      fail_if(out.size() > kMaxDims, "too many dimensions");
      skip_ws();
      if (peek() == ')') {
        fail_if(out.size() == 1, "a one-element shape needs a trailing comma, as in (3,)");
        ++i_;
        return out;
      }
      expect(',');
      skip_ws();
      if (peek() == ')') {
        ++i_;
        return out;
      }
    }
  }

  const char* s_;
  size_t n_;
  const std::string& source_;
  size_t i_ = 0;
};

const NpyType* find_type(const std::string& descr) {
  for (const auto& t : kTypes)
    if (descr == t.descr) return &t;
  return nullptr;
}

const NpyType* find_type(at::ScalarType s) {
  for (const auto& t : kTypes)
    if (s == t.type) return &t;
  return nullptr;
}

}  // namespace

at::Tensor parse_npy(const uint8_t* data, size_t size, const std::string& source) {
  CTFGEN_CHECK(size >= 10 && std::memcmp(data, kMagic, 6) == 0, source,
               ": not a .npy file (missing the \\x93NUMPY signature)");
  const int major = data[6], minor = data[7];
  CTFGEN_CHECK((major == 1 || major == 2 || major == 3) && minor == 0, source, ": unsupported .npy version ",
               major, ".", minor, " (supported: 1.0, 2.0, 3.0)");
  size_t prefix = major == 1 ? 10 : 12;
  CTFGEN_CHECK(size >= prefix, source, ": .npy file truncated in its preamble");
  uint64_t hlen = major == 1 ? (uint64_t{data[8]} | uint64_t{data[9]} << 8)
                             : (uint64_t{data[8]} | uint64_t{data[9]} << 8 | uint64_t{data[10]} << 16 |
                                uint64_t{data[11]} << 24);
  CTFGEN_CHECK(hlen <= kMaxNpyHeader, source, ": .npy header length ", hlen, " exceeds the limit of ",
               kMaxNpyHeader);
  CTFGEN_CHECK(hlen <= size - prefix, source, ": .npy header length ", hlen, " runs past the end of the file (",
               size, " bytes)");
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(reinterpret_cast<const char*>(data + prefix), hlen, source).parse(descr, fortran, shape);
  CTFGEN_CHECK(!fortran, source, ": fortran_order True is not supported (save a C-contiguous array, e.g. "
                                 "numpy.ascontiguousarray)");
  const NpyType* t = find_type(descr);
  CTFGEN_CHECK(t, source, ": unsupported .npy dtype '", descr,
               "' (supported: <f8 <f4 <f2 <i8 <i4 <i2 |i1 |u1 |b1, little-endian)");
  uint64_t nbytes = t->size;
  for (int64_t d : shape)
    CTFGEN_CHECK(!__builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes), source, ": shape ",
                 shape_str(shape), " overflows the byte count");
  const uint64_t body = size - prefix - hlen;
  CTFGEN_CHECK(body == nbytes, source, ": file length mismatch: dtype ", descr, " shape ", shape_str(shape),
               " needs ", nbytes, " data bytes, the file has ", body);
  const uint8_t* payload = data + prefix + hlen;
  if (t->type == at::kBool)
    for (uint64_t i = 0; i < nbytes; ++i)
      CTFGEN_CHECK(payload[i] <= 1, source, ": bool array holds the byte ", int{payload[i]}, " at element ", i);
  auto out = torch::empty(shape, torch::TensorOptions().dtype(t->type));
  if (nbytes) std::memcpy(out.data_ptr(), payload, nbytes);
  return out;
}

at::Tensor load_npy(const std::string& path) {
  auto bytes = fs::read_file(path);
  return parse_npy(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> serialize_npy(const at::Tensor& t_in) {
  CTFGEN_CHECK(t_in.defined(), "save_npy: tensor is undefined");
  const NpyType* t = find_type(t_in.scalar_type());
  CTFGEN_CHECK(t, "save_npy: dtype ", c10::toString(t_in.scalar_type()), " has no .npy equivalent here");
  auto c = t_in.detach().to(torch::kCPU).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < c.dim(); ++i) shape += str_cat(c.size(i), c.dim() == 1 ? "," : (i + 1 < c.dim() ? ", " : ""));
  shape += ")";
  std::string header = str_cat("{'descr': '", t->descr, "', 'fortran_order': False, 'shape': ", shape, ", }");
  auto padded = [&](size_t prefix) { return header.size() + 1 + (64 - (prefix + header.size() + 1) % 64) % 64; };
  const bool v2 = padded(10) > 65535;
  const size_t prefix = v2 ? 12 : 10;
  header.append(padded(prefix) - header.size() - 1, ' ');
  header.push_back('\n');
  const size_t nbytes = static_cast<size_t>(c.numel()) * t->size;
  std::vector<uint8_t> out(prefix + header.size() + nbytes);
  std::memcpy(out.data(), kMagic, 6);
  out[6] = v2 ? 2 : 1;
  out[7] = 0;
  const uint64_t hl = header.size();
  for (size_t i = 0; i < prefix - 8; ++i) out[8 + i] = static_cast<uint8_t>(hl >> (8 * i));
  std::memcpy(out.data() + prefix, header.data(), header.size());
  if (nbytes) std::memcpy(out.data() + prefix + header.size(), c.data_ptr(), nbytes);
  return out;
}

void save_npy(const std::string& path, const at::Tensor& t) {
  auto bytes = serialize_npy(t);
  fs::atomic_write(path, bytes.data(), bytes.size());
}

}  // namespace ctfgen::io
