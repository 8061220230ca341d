#include "core/fs.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>

#include "core/error.h"

namespace ctfgen::fs {
namespace {

std::string errno_text() { return std::strerror(errno); }

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  CTFGEN_CHECK(f, path, ": cannot open (", errno_text(), ")");
  struct stat st {};
  CTFGEN_CHECK(::fstat(fileno(f.get()), &st) == 0, path, ": cannot stat (", errno_text(), ")");
  CTFGEN_CHECK(!S_ISDIR(st.st_mode), path, ": is a directory, expected a file");
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  size_t got = data.empty() ? 0 : std::fread(data.data(), 1, data.size(), f.get());
  CTFGEN_CHECK(got == data.size(), path, ": short read (", got, " of ", data.size(), " bytes)");
  return data;
}

std::string read_text(const std::string& path) {
  auto d = read_file(path);
  return std::string(d.begin(), d.end());
}

nlohmann::json read_json(const std::string& path) {
  const std::string text = read_text(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(str_cat(path, ": not valid JSON (", e.what(), ")"));
  }
}

namespace {
std::atomic<WriteObserver> write_observer{nullptr};
}  // namespace

void write_all(std::FILE* f, const void* data, size_t size, const std::string& path) {
  size_t done = size ? std::fwrite(data, 1, size, f) : 0;
  CTFGEN_CHECK(done == size, path, ": write failed after ", done, " of ", size, " bytes (",
               errno_text(), ")");
  if (WriteObserver observer = write_observer.load()) observer(static_cast<size_t>(std::ftell(f)));
}

void set_write_observer(WriteObserver observer) { write_observer.store(observer); }

void atomic_write(const std::string& path, const std::function<void(std::FILE*)>& writer) {
  std::filesystem::path p(path);
  std::string dir = p.parent_path().string();
  if (!dir.empty()) ensure_dir(dir);
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  CTFGEN_CHECK(f, path, ": cannot create temporary file ", tmp, " (", errno_text(), ")");
  try {
    writer(f);
    CTFGEN_CHECK(std::fflush(f) == 0, path, ": flush failed (", errno_text(), ")");
    CTFGEN_CHECK(::fsync(fileno(f)) == 0, path, ": fsync failed (", errno_text(), ")");
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw Error(str_cat(path, ": close failed (", errno_text(), ")"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    std::remove(tmp.c_str());
    throw Error(str_cat(path, ": cannot rename temporary file into place (", why, ")"));
  }
  fsync_dir(dir);
}

void atomic_write(const std::string& path, const void* data, size_t size) {
  atomic_write(path, [&](std::FILE* f) { write_all(f, data, size, path); });
}

void atomic_write_text(const std::string& path, const std::string& text) {
  atomic_write(path, text.data(), text.size());
}

void ensure_dir(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  CTFGEN_CHECK(!ec && std::filesystem::is_directory(path), path,
               ": cannot create directory (", ec ? ec.message() : "exists as a file", ")");
}

bool exists(const std::string& path) { return std::filesystem::exists(path); }

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  const bool same = std::filesystem::equivalent(a, b, ec);
  return !ec && same;
}

std::string sha256_bytes(const void* data, size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CTFGEN_CHECK(EVP_Digest(data, size, md, &len, EVP_sha256(), nullptr) == 1, "sha256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string sha256_file(const std::string& path) {
  auto d = read_file(path);
  return sha256_bytes(d.data(), d.size());
}

}  // namespace ctfgen::fs
