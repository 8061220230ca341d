#include "io/zip_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/error.h"

namespace ctfgen::io {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kEocdSize = 22;
constexpr uint64_t kMaxComment = 0xFFFF;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) {
  return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}

// a + b <= limit without overflow.
bool fits(uint64_t a, uint64_t b, uint64_t limit) { return a <= limit && b <= limit - a; }

}  // namespace

struct ZipReader::Backing {
  int fd = -1;
  const uint8_t* mem = nullptr;
  ~Backing() {
    if (fd >= 0) ::close(fd);
  }
};

ZipReader ZipReader::open_file(const std::string& path, uint64_t max_entries) {
  ZipReader z;
  z.source_ = path;
  z.backing_ = std::make_shared<Backing>();
  z.backing_->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CTFGEN_CHECK(z.backing_->fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  off_t end = ::lseek(z.backing_->fd, 0, SEEK_END);
  CTFGEN_CHECK(end >= 0, path, ": cannot determine the file size (", std::strerror(errno), ")");
  z.size_ = static_cast<uint64_t>(end);
  z.parse(max_entries);
  return z;
}

ZipReader ZipReader::from_memory(const uint8_t* data, size_t size, const std::string& source,
                                 uint64_t max_entries) {
  ZipReader z;
  z.source_ = source;
  z.backing_ = std::make_shared<Backing>();
  z.backing_->mem = data;
  z.size_ = size;
  z.parse(max_entries);
  return z;
}

bool ZipReader::looks_like_zip(const uint8_t* data, size_t size) {
  return size >= 4 && (le32(data) == kLocalSig || le32(data) == kEocdSig);
}

void ZipReader::pread_exact(uint64_t offset, void* dst, uint64_t n, const char* what) const {
  CTFGEN_CHECK(fits(offset, n, size_), source_, ": ", what, " at offset ", offset, " (", n,
               " bytes) lies past the end of the archive (", size_, " bytes): truncated or corrupt");
  if (n == 0) return;
  if (backing_->mem) {
    std::memcpy(dst, backing_->mem + offset, n);
    return;
  }
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t done = 0;
  while (done < n) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n - done, 1u << 30));
    ssize_t r = ::pread(backing_->fd, out + done, chunk, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    CTFGEN_CHECK(r > 0, source_, ": read error for ", what, " at offset ", offset + done, " (",
                 r < 0 ? std::strerror(errno) : "unexpected end of file", ")");
    done += static_cast<uint64_t>(r);
  }
}

void ZipReader::parse(uint64_t max_entries) {
  CTFGEN_CHECK(size_ >= kEocdSize, source_, ": not a ZIP archive (", size_,
               " bytes, shorter than an end-of-central-directory record)");
  // The EOCD record sits at the end, followed by a comment of at most 65535 bytes.
  uint64_t tail_len = std::min<uint64_t>(size_, kEocdSize + kMaxComment);
  std::vector<uint8_t> tail(tail_len);
  pread_exact(size_ - tail_len, tail.data(), tail_len, "end-of-central-directory search");
  int64_t eocd_in_tail = -1;
  for (int64_t i = static_cast<int64_t>(tail_len - kEocdSize); i >= 0; --i) {
    const uint8_t* p = tail.data() + i;
    if (le32(p) == kEocdSig &&
        static_cast<uint64_t>(i) + kEocdSize + le16(p + 20) == tail_len) {
      eocd_in_tail = i;
      break;
    }
  }
  CTFGEN_CHECK(eocd_in_tail >= 0, source_,
               ": not a ZIP archive or truncated (no end-of-central-directory record found)");
  const uint8_t* e = tail.data() + eocd_in_tail;
  const uint64_t eocd_pos = size_ - tail_len + static_cast<uint64_t>(eocd_in_tail);
  uint64_t disk = le16(e + 4), cd_disk = le16(e + 6);
  uint64_t n_disk = le16(e + 8), n_total = le16(e + 10);
  uint64_t cd_size = le32(e + 12), cd_offset = le32(e + 16);
  uint64_t cd_limit = eocd_pos;  // the central directory ends before the EOCD (or ZIP64 records)

  bool zip64 = n_total == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF ||
               disk == 0xFFFF || cd_disk == 0xFFFF || n_disk == 0xFFFF;
  if (zip64) {
    CTFGEN_CHECK(eocd_pos >= 20, source_, ": ZIP64 archive without a ZIP64 locator");
    uint8_t loc[20];
    pread_exact(eocd_pos - 20, loc, 20, "ZIP64 end-of-central-directory locator");
    CTFGEN_CHECK(le32(loc) == kZip64LocatorSig, source_,
                 ": ZIP64 end-of-central-directory locator missing (truncated or corrupt)");
    CTFGEN_CHECK(le32(loc + 4) == 0 && le32(loc + 16) <= 1, source_,
                 ": multi-disk ZIP archives are not supported");
    uint64_t z64_pos = le64(loc + 8);
    CTFGEN_CHECK(fits(z64_pos, 56, eocd_pos - 20), source_,
                 ": ZIP64 end-of-central-directory offset ", z64_pos, " is out of range");
    uint8_t z[56];
    pread_exact(z64_pos, z, 56, "ZIP64 end-of-central-directory record");
    CTFGEN_CHECK(le32(z) == kZip64EocdSig, source_,
                 ": bad ZIP64 end-of-central-directory signature at offset ", z64_pos);
    disk = le32(z + 16);
    cd_disk = le32(z + 20);
    n_disk = le64(z + 24);
    n_total = le64(z + 32);
    cd_size = le64(z + 40);
    cd_offset = le64(z + 48);
    cd_limit = z64_pos;
  }
  CTFGEN_CHECK(disk == 0 && cd_disk == 0 && n_disk == n_total, source_,
               ": multi-disk ZIP archives are not supported");
  CTFGEN_CHECK(n_total <= max_entries, source_, ": ", n_total, " entries exceed the limit of ",
               max_entries);
  CTFGEN_CHECK(fits(cd_offset, cd_size, cd_limit), source_, ": central directory (offset ",
               cd_offset, ", ", cd_size, " bytes) does not fit before its end record at ",
               cd_limit, ": truncated or corrupt");
  // Each central record takes at least 46 bytes.
  CTFGEN_CHECK(n_total <= cd_size / 46, source_, ": central directory of ", cd_size,
               " bytes cannot hold ", n_total, " entries");
  central_dir_offset_ = cd_offset;

  std::vector<uint8_t> cd(cd_size);
  pread_exact(cd_offset, cd.data(), cd_size, "central directory");
  entries_.reserve(n_total);
  std::unordered_set<std::string> names;
  uint64_t pos = 0;
  for (uint64_t i = 0; i < n_total; ++i) {
    CTFGEN_CHECK(fits(pos, 46, cd_size), source_, ": central directory entry ", i,
                 " is truncated");
    const uint8_t* c = cd.data() + pos;
    CTFGEN_CHECK(le32(c) == kCentralSig, source_, ": bad central directory signature for entry ",
                 i);
    uint16_t flags = le16(c + 8);
    ZipEntry ent;
    ent.method = le16(c + 10);
    ent.crc32 = le32(c + 16);
    ent.compressed_size = le32(c + 20);
    ent.uncompressed_size = le32(c + 24);
    uint64_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    uint64_t entry_disk = le16(c + 34);
    ent.local_header_offset = le32(c + 42);
    uint64_t var_len = name_len + extra_len + comment_len;
    CTFGEN_CHECK(fits(pos + 46, var_len, cd_size), source_, ": central directory entry ", i,
                 " runs past the directory's end");
    ent.name.assign(reinterpret_cast<const char*>(c + 46), name_len);
    // ZIP64 extended information: present fields appear in this order, each only if the
    // 32-bit field holds its all-ones marker.
    const uint8_t* x = c + 46 + name_len;
    uint64_t xpos = 0;
    bool need_u = ent.uncompressed_size == 0xFFFFFFFF, need_c = ent.compressed_size == 0xFFFFFFFF,
         need_o = ent.local_header_offset == 0xFFFFFFFF, need_d = entry_disk == 0xFFFF;
    while (xpos + 4 <= extra_len) {
      uint16_t id = le16(x + xpos), len = le16(x + xpos + 2);
      CTFGEN_CHECK(xpos + 4 + len <= extra_len, source_, ": entry '", ent.name,
                   "': extra field runs past its end");
      if (id == 0x0001) {
        const uint8_t* f = x + xpos + 4;
        uint64_t fpos = 0;
        auto take = [&](uint64_t& out, const char* field) {
          CTFGEN_CHECK(fpos + 8 <= len, source_, ": entry '", ent.name,
                       "': ZIP64 extra field lacks the ", field);
          out = le64(f + fpos);
          fpos += 8;
        };
        if (need_u) take(ent.uncompressed_size, "uncompressed size"), need_u = false;
        if (need_c) take(ent.compressed_size, "compressed size"), need_c = false;
        if (need_o) take(ent.local_header_offset, "local header offset"), need_o = false;
        if (need_d) {
          CTFGEN_CHECK(fpos + 4 <= len, source_, ": entry '", ent.name,
                       "': ZIP64 extra field lacks the disk number");
          entry_disk = le32(f + fpos);
          need_d = false;
        }
      }
      xpos += 4 + len;
    }
    CTFGEN_CHECK(!need_u && !need_c && !need_o && !need_d, source_, ": entry '", ent.name,
                 "': ZIP64 marker without a ZIP64 extra field");
    CTFGEN_CHECK(entry_disk == 0, source_, ": entry '", ent.name, "' lies on another disk");
    CTFGEN_CHECK(!(flags & 0x1), source_, ": entry '", ent.name,
                 "' is encrypted; encrypted archives are not supported");
    CTFGEN_CHECK(ent.method == 0 || ent.method == 8, source_, ": entry '", ent.name,
                 "' uses compression method ", ent.method,
                 "; only stored (0) and deflate (8) are supported");
    CTFGEN_CHECK(ent.method != 0 || ent.compressed_size == ent.uncompressed_size, source_,
                 ": stored entry '", ent.name, "' has compressed size ", ent.compressed_size,
                 " != uncompressed size ", ent.uncompressed_size);
    // Local header (30 bytes + name) and data must lie before the central directory.
    CTFGEN_CHECK(fits(ent.local_header_offset, 30 + name_len, cd_offset) &&
                     fits(ent.local_header_offset + 30 + name_len, ent.compressed_size, cd_offset),
                 source_, ": entry '", ent.name, "' (local header at ", ent.local_header_offset,
                 ", ", ent.compressed_size, " bytes) overlaps the central directory at ",
                 cd_offset, ": truncated or corrupt");
    CTFGEN_CHECK(names.insert(ent.name).second, source_, ": duplicate entry name '", ent.name,
                 "'");
    entries_.push_back(std::move(ent));
    pos += 46 + var_len;
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

uint64_t ZipReader::data_offset(const ZipEntry& entry) const {
  uint8_t h[30];
  pread_exact(entry.local_header_offset, h, 30, "local file header");
  CTFGEN_CHECK(le32(h) == kLocalSig, source_, ": entry '", entry.name,
               "': bad local header signature at offset ", entry.local_header_offset);
  uint64_t name_len = le16(h + 26), extra_len = le16(h + 28);
  CTFGEN_CHECK(name_len == entry.name.size(), source_, ": entry '", entry.name,
               "': local header name length disagrees with the central directory");
  uint64_t off = entry.local_header_offset + 30 + name_len + extra_len;
  CTFGEN_CHECK(fits(off, entry.compressed_size, central_dir_offset_), source_, ": entry '",
               entry.name, "': data (offset ", off, ", ", entry.compressed_size,
               " bytes) runs into the central directory at ", central_dir_offset_,
               ": truncated or corrupt");
  return off;
}

std::vector<uint8_t> ZipReader::read(const ZipEntry& entry) const {
  CTFGEN_CHECK(entry.uncompressed_size <= std::numeric_limits<size_t>::max() / 2, source_,
               ": entry '", entry.name, "' is too large (", entry.uncompressed_size, " bytes)");
  std::vector<uint8_t> out(static_cast<size_t>(entry.uncompressed_size));
  read_into(entry, out.data(), out.size());
  return out;
}

void ZipReader::read_into(const ZipEntry& entry, void* dst, uint64_t size) const {
  CTFGEN_CHECK(size == entry.uncompressed_size, source_, ": entry '", entry.name, "' holds ",
               entry.uncompressed_size, " bytes, the caller expected ", size);
  uint64_t off = data_offset(entry);
  if (entry.method == 0) {
    pread_exact(off, dst, size, "entry data");
  } else {
    std::vector<uint8_t> packed(entry.compressed_size);
    pread_exact(off, packed.data(), packed.size(), "compressed entry data");
    z_stream zs{};
    CTFGEN_CHECK(inflateInit2(&zs, -15) == Z_OK, source_, ": zlib initialisation failed");
    auto* out = static_cast<uint8_t*>(dst);
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      uInt in_chunk = static_cast<uInt>(std::min<uint64_t>(packed.size() - in_done, 1u << 30));
      uInt out_chunk = static_cast<uInt>(std::min<uint64_t>(size - out_done, 1u << 30));
      zs.next_in = packed.data() + in_done;
      zs.avail_in = in_chunk;
      zs.next_out = out + out_done;
      zs.avail_out = out_chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      in_done += in_chunk - zs.avail_in;
      out_done += out_chunk - zs.avail_out;
      if (rc == Z_OK && in_chunk == zs.avail_in && out_chunk == zs.avail_out) break;  // stuck
    }
    inflateEnd(&zs);
    CTFGEN_CHECK(rc == Z_STREAM_END && out_done == size, source_, ": entry '", entry.name,
                 "': deflate data is corrupt or does not inflate to ", size, " bytes");
  }
  // CRC-32 over the uncompressed bytes, in chunks that fit zlib's uInt.
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const uint8_t*>(dst);
  for (uint64_t done = 0; done < size;) {
    uInt chunk = static_cast<uInt>(std::min<uint64_t>(size - done, 1u << 30));
    crc = crc32(crc, p + done, chunk);
    done += chunk;
  }
  CTFGEN_CHECK(static_cast<uint32_t>(crc) == entry.crc32, source_, ": entry '", entry.name,
               "' fails its CRC-32 check (corrupt data)");
}

}  // namespace ctfgen::io
