// File helpers: whole-file reads, atomic writes (temporary file in the same directory, write,
// flush, fsync, rename, fsync the directory) and content hashes.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ctfgen::fs {

/// Reads a whole file; throws Error naming the path on failure.
std::vector<uint8_t> read_file(const std::string& path);
std::string read_text(const std::string& path);
/// Reads and parses a JSON file; throws Error "<path>: not valid JSON (...)" on bad syntax.
nlohmann::json read_json(const std::string& path);

/// Writes `path` atomically: readers see the old file or the complete new one, never a torn one.
/// `writer` receives a FILE* opened on a temporary file next to `path`.
void atomic_write(const std::string& path, const std::function<void(std::FILE*)>& writer);
void atomic_write(const std::string& path, const void* data, size_t size);
void atomic_write_text(const std::string& path, const std::string& text);

/// Writes `size` bytes to f or throws naming `path`.
void write_all(std::FILE* f, const void* data, size_t size, const std::string& path);

/// Creates a directory and its parents; throws naming the path if that fails.
void ensure_dir(const std::string& path);
bool exists(const std::string& path);
/// True when both paths exist and name the same file (after resolving links).
bool same_file(const std::string& a, const std::string& b);

/// Lower-case hex SHA-256 of a file's bytes, or of a byte range.
std::string sha256_file(const std::string& path);
std::string sha256_bytes(const void* data, size_t size);

/// Called by atomic_write() after each chunk with the bytes written so far to the temporary
/// file; none by default. Only the test-only program tests/crash_main.cpp installs one (to kill
/// itself mid-write); the shipped `ctfgen` never does, so no environment variable can reach it.
using WriteObserver = void (*)(size_t written);
void set_write_observer(WriteObserver observer);

}  // namespace ctfgen::fs
