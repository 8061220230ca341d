// A small read-only ZIP reader written to the PKWARE APPNOTE (6.3.x), enough for PyTorch's
// checkpoint archives: stored (method 0) entries, as torch.save writes them, plus deflate
// (method 8) for archives re-packed by other tools; ZIP64 sizes and offsets; no encryption,
// no multi-disk archives. Every size and offset read from the file is checked against the
// archive's length before it is used; CRC-32 is verified on every read.
//
// Thread-safety: a ZipReader may be read from several threads (reads use pread on the file
// or copy from the in-memory image; nothing is mutated after construction).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ctfgen::io {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
};

class ZipReader {
 public:
  /// Opens an archive on disk (the file stays open; entries are read on demand).
  /// Throws Error naming `path` when the file is not a ZIP archive, is truncated, or breaks the
  /// format's rules (bad signatures, offsets past the end, encrypted or multi-disk archives,
  /// duplicate names, more than `max_entries` entries).
  static ZipReader open_file(const std::string& path, uint64_t max_entries = 1'000'000);
  /// Parses an archive held in memory; `data` must outlive the reader. `source` names it in errors.
  static ZipReader from_memory(const uint8_t* data, size_t size, const std::string& source,
                               uint64_t max_entries = 1'000'000);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  /// The entry called exactly `name`, or nullptr.
  const ZipEntry* find(const std::string& name) const;
  /// The entry's uncompressed bytes (CRC-checked). Throws Error naming the archive and entry
  /// when the entry's data lies outside the archive, does not inflate, or fails its CRC.
  std::vector<uint8_t> read(const ZipEntry& entry) const;
  /// Same, into `dst`, which must hold exactly entry.uncompressed_size bytes.
  void read_into(const ZipEntry& entry, void* dst, uint64_t size) const;
  const std::string& source() const { return source_; }
  uint64_t size() const { return size_; }

  /// True when the first bytes look like a ZIP local header ("PK\3\4") or an empty archive.
  static bool looks_like_zip(const uint8_t* data, size_t size);

 private:
  struct Backing;
  ZipReader() = default;
  void parse(uint64_t max_entries);
  void pread_exact(uint64_t offset, void* dst, uint64_t n, const char* what) const;
  uint64_t data_offset(const ZipEntry& entry) const;

  std::shared_ptr<Backing> backing_;
  std::string source_;
  uint64_t size_ = 0;
  uint64_t central_dir_offset_ = 0;
  std::vector<ZipEntry> entries_;
};

}  // namespace ctfgen::io
