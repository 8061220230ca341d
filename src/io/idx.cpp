#include "io/idx.h"

#include <torch/torch.h>
#include <zlib.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/shape.h"

namespace ctfgen::io {
namespace {

constexpr size_t kMaxHeader = 4 + 4 * 4;

// Incremental gzip inflater that never produces more than a requested number of bytes.
class GzipReader {
 public:
  GzipReader(const uint8_t* data, size_t size, const std::string& source) : source_(source) {
    std::memset(&z_, 0, sizeof(z_));
    CTFGEN_CHECK(size <= UINT32_MAX, source, ": gzip input too large (", size, " bytes)");
    CTFGEN_CHECK(inflateInit2(&z_, 16 + MAX_WBITS) == Z_OK, source, ": zlib initialisation failed");
    z_.next_in = const_cast<Bytef*>(data);
    z_.avail_in = static_cast<uInt>(size);
  }
  ~GzipReader() { inflateEnd(&z_); }
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  // Appends up to `want` bytes to out; returns the number appended (fewer only at the end).
  size_t read(std::vector<uint8_t>& out, size_t want) {
    size_t got = 0;
    constexpr size_t kChunk = size_t{1} << 20;
    while (got < want && !done_) {
      size_t step = std::min(kChunk, want - got);
      size_t old = out.size();
      out.resize(old + step);
      z_.next_out = out.data() + old;
      z_.avail_out = static_cast<uInt>(step);
      int rc = inflate(&z_, Z_NO_FLUSH);
      size_t produced = step - z_.avail_out;
      out.resize(old + produced);
      got += produced;
      if (rc == Z_STREAM_END) {
        // Concatenated gzip members are allowed (gzip -c a b); anything else after is an error.
        if (z_.avail_in == 0) {
          done_ = true;
        } else {
          CTFGEN_CHECK(z_.avail_in >= 2 && z_.next_in[0] == 0x1f && z_.next_in[1] == 0x8b, source_,
                       ": trailing bytes after the gzip stream");
          CTFGEN_CHECK(inflateReset(&z_) == Z_OK, source_, ": zlib reset failed");
        }
        continue;
      }
      if (rc == Z_BUF_ERROR) {  // no progress possible: the input ran out mid-stream
        CTFGEN_CHECK(produced > 0, source_, ": gzip stream is truncated");
        continue;
      }
      CTFGEN_CHECK(rc == Z_OK, source_, ": corrupt gzip data (", z_.msg ? z_.msg : zError(rc), ")");
      CTFGEN_CHECK(produced > 0 || z_.avail_in > 0, source_, ": gzip stream is truncated");
    }
    return got;
  }
  bool at_end() {
    if (done_) return true;
    std::vector<uint8_t> probe;
    return read(probe, 1) == 0;
  }

 private:
  z_stream z_;
  std::string source_;
  bool done_ = false;
};

struct Header {
  std::vector<int64_t> sizes;
  uint64_t payload = 1;
  size_t header_bytes = 0;
};

// Validates the magic and sizes; `avail` bytes of `h` are present.
Header parse_header(const uint8_t* h, size_t avail, const std::string& source) {
  CTFGEN_CHECK(avail >= 4, source, ": not an IDX file (", avail, " bytes, shorter than the magic)");
  CTFGEN_CHECK(h[0] == 0 && h[1] == 0, source, ": not an IDX file (bad magic bytes ",
               int{h[0]}, " ", int{h[1]}, ")");
  CTFGEN_CHECK(h[2] == 0x08, source, ": IDX data type 0x", std::hex, int{h[2]}, std::dec,
               " is not supported (only 0x08, unsigned byte)");
  const int ndim = h[3];
  CTFGEN_CHECK(ndim >= 1 && ndim <= 4, source, ": IDX dimension count ", ndim, " is not in 1..4");
  Header out;
  out.header_bytes = 4 + 4 * static_cast<size_t>(ndim);
  CTFGEN_CHECK(avail >= out.header_bytes, source, ": IDX header truncated (", avail, " of ",
               out.header_bytes, " bytes)");
  for (int i = 0; i < ndim; ++i) {
    const uint8_t* p = h + 4 + 4 * i;
    uint64_t d = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3];
    CTFGEN_CHECK(!__builtin_mul_overflow(out.payload, d, &out.payload) && out.payload <= kMaxIdxBytes,
                 source, ": IDX sizes ", shape_str(out.sizes), " x ", d, " exceed the limit of ",
                 kMaxIdxBytes, " bytes");
    out.sizes.push_back(static_cast<int64_t>(d));
  }
  return out;
}

at::Tensor to_tensor(const Header& h, const uint8_t* payload) {
  auto t = torch::empty(h.sizes, torch::kUInt8);
  if (h.payload) std::memcpy(t.data_ptr<uint8_t>(), payload, h.payload);
  return t;
}

}  // namespace

at::Tensor parse_idx(const uint8_t* data, size_t size, const std::string& source) {
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gz) {
    Header h = parse_header(data, size, source);
    const uint64_t have = size - h.header_bytes;
    CTFGEN_CHECK(have == h.payload, source, ": IDX file length mismatch: sizes ", shape_str(h.sizes),
                 " need ", h.payload, " data bytes, the file has ", have);
    return to_tensor(h, data + h.header_bytes);
  }
  GzipReader z(data, size, source);
  std::vector<uint8_t> buf;
  z.read(buf, 4);
  if (buf.size() == 4 && buf[3] >= 1 && buf[3] <= 4) z.read(buf, 4 * static_cast<size_t>(buf[3]));
  Header h = parse_header(buf.data(), buf.size(), source);
  buf.clear();
  const size_t got = z.read(buf, h.payload);
  CTFGEN_CHECK(got == h.payload, source, ": IDX data truncated: sizes ", shape_str(h.sizes), " need ",
               h.payload, " bytes, the decompressed file has ", got);
  CTFGEN_CHECK(z.at_end(), source, ": trailing bytes after the IDX data (sizes ", shape_str(h.sizes), ")");
  return to_tensor(h, buf.data());
}

at::Tensor load_idx(const std::string& path) {
  auto bytes = fs::read_file(path);
  return parse_idx(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> serialize_idx(const at::Tensor& t_in) {
  CTFGEN_CHECK(t_in.scalar_type() == at::kByte && t_in.dim() >= 1 && t_in.dim() <= 4,
               "serialize_idx: expected a uint8 tensor with 1..4 dimensions");
  auto t = t_in.to(torch::kCPU).contiguous();
  std::vector<uint8_t> out = {0, 0, 0x08, static_cast<uint8_t>(t.dim())};
  for (int64_t d : t.sizes()) {
    CTFGEN_CHECK(d <= UINT32_MAX, "serialize_idx: dimension ", d, " too large");
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(d) >> s));
  }
  const size_t n = static_cast<size_t>(t.numel());
  out.resize(out.size() + n);
  if (n) std::memcpy(out.data() + out.size() - n, t.data_ptr<uint8_t>(), n);
  return out;
}

}  // namespace ctfgen::io
