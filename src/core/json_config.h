// JSON round trip for config structs. Every XxxConfig has
//   nlohmann::json to_json() const;  static XxxConfig from_json(const nlohmann::json&);
//   void validate() const;           // throws UsageError naming the field and value
// JsonFields reads fields with defaults kept for absent keys (fields are only ever added) and
// rejects unknown keys and wrong types with an error that names the field.
#pragma once
#include <nlohmann/json.hpp>
#include <limits>
#include <set>
#include <type_traits>
#include <string>

#include "core/error.h"

namespace ctfgen {

class JsonFields {
 public:
  JsonFields(const nlohmann::json& j, std::string what) : j_(j), what_(std::move(what)) {
    CTFGEN_CHECK_USAGE(j_.is_object(), what_, ": expected a JSON object, got ", j_.type_name());
  }
  template <typename T>
  void get(const char* key, T& out) {
    seen_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end()) return;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) check_integer<T>(key, *it);
    try {
      out = it->template get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw UsageError(str_cat(what_, ": field '", key, "' has the wrong type (", it->type_name(),
                               ")"));
    }
  }
  /// Throws if the object holds a key that no get() asked for.
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      CTFGEN_CHECK_USAGE(seen_.count(it.key()), what_, ": unknown field '", it.key(), "'");
  }

 private:
  // Integral fields need an integer JSON value inside T's range: nlohmann would otherwise convert
  // 2.5 or 1e300 (undefined behaviour) or wrap -1 into an unsigned field.
  template <typename T>
  void check_integer(const char* key, const nlohmann::json& v) const {
    bool ok = false;
    if (v.is_number_unsigned())
      ok = v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    else if (v.is_number_integer())
      ok = std::is_signed_v<T> && v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
           v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max());
    CTFGEN_CHECK_USAGE(ok || !v.is_number(), what_, ": field '", key, "' must be an integer in [",
                       +std::numeric_limits<T>::min(), ", ", +std::numeric_limits<T>::max(), "], got ", v.dump());
  }

  const nlohmann::json& j_;
  std::string what_;
  std::set<std::string> seen_;
};

}  // namespace ctfgen
