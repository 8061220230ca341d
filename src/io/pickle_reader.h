// A restricted, non-executing reader of Python pickles as torch.save writes them (protocol 2 in
// PyTorch 1.x/2.x; protocol 3-5 opcodes and protocol 4 framing are accepted too). It never
// imports or calls anything named in the file. It builds only:
//   None, bool, int (up to 64 bits), float, str, bytes, tuple, list, dict (plain or
//   collections.OrderedDict), tensor references (torch._utils._rebuild_tensor_v2,
//   _rebuild_parameter, _rebuild_parameter_with_state over ('storage', torch.<T>Storage, key,
//   location, numel) persistent ids) and their storages.
// Every other GLOBAL / REDUCE / NEWOBJ / BUILD result (argparse.Namespace, numpy scalars,
// os.system(...)) becomes an opaque Object that records the name it claimed: it is never
// resolved and its arguments are dropped. Its BUILD state is dropped too, with one exception:
// an Object claiming the name argparse.Namespace (what LlamaGen's training scripts save as
// "args") keeps each BUILD state that is a Dict as a child, as inert data: nothing is set,
// called or resolved, and the state is subject to the same nesting and value limits as any
// container (Document::namespace_fields reads it); more than 8 such states on one object is an
// error (Python writes one). State that is not a Dict, and the state of
// every other Object, is dropped. Protocol-0/1 object opcodes (INST, OBJ), extension registry
// codes (EXT*) and out-of-band buffers are refused.
//
// Values live in an arena and refer to each other by index, so cyclic pickles cannot leak or
// recurse. Limits (stack, memo, marks, nesting, value count) bound memory and time; every
// length is checked against the remaining input. Every error is a ctfgen::Error naming the
// source, the byte offset and the opcode.
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ctfgen::io::pickle {

using Ref = uint32_t;

enum class Kind : uint8_t {
  None,
  Bool,
  Int,
  Float,
  Str,
  Bytes,
  Tuple,
  List,
  Dict,
  Global,   // a class or function name (module.name), never resolved
  Object,   // an opaque result of calling / instantiating something we do not build
  Storage,  // a persistent-id storage reference
  Tensor,   // a strided view of a Storage
};
const char* kind_name(Kind k);

struct Value {
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;           // Str/Bytes contents; Global/Object: "module.name"; Storage: key
  std::vector<Ref> items;  // Tuple/List elements; Dict: key0, value0, key1, value1, ...;
                           // Object argparse.Namespace: its Dict BUILD states, in order
  int depth = 0;           // container nesting depth (0 for scalars)
  // Storage
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  int64_t numel = 0;  // elements, as the persistent id declares
  std::string location;
  // Tensor
  Ref storage = 0;
  int64_t storage_offset = 0;  // in elements
  std::vector<int64_t> sizes, strides;
};

struct Limits {
  uint64_t max_input_bytes = 512ull << 20;  // data.pkl size
  uint64_t max_stack = 1'000'000;           // values on the stack at once
  uint64_t max_memo = 10'000'000;           // memo entries
  uint64_t max_marks = 10'000;              // open MARKs
  int max_depth = 200;                      // container nesting
  uint64_t max_values = 50'000'000;         // values created
  int max_tensor_dims = 32;
};

/// The unpickled object graph. `root` is the value STOP returned.
struct Document {
  std::vector<Value> values;
  Ref root = 0;
  std::vector<std::string> opaque_names;  // distinct names of opaque objects, in first-seen order

  const Value& at(Ref r) const { return values.at(r); }
  /// For a Dict: the value stored under string key `key` (the last one, as Python keeps), or
  /// nullptr when absent or `dict` is not a Dict.
  const Value* dict_get(const Value& dict, const std::string& key) const;
  /// For an Object named argparse.Namespace: its fields (str keys of its kept BUILD states,
  /// merged in order as Python's BUILD updates __dict__: a later value replaces an earlier one
  /// and keeps the first position), as (name, value) pairs; non-str keys are skipped. Empty for
  /// any other value.
  std::vector<std::pair<std::string, Ref>> namespace_fields(const Value& ns) const;
  /// A short description for error messages: "dict", "tensor [3, 4] Float", "object argparse.Namespace".
  std::string describe(Ref r) const;
};

/// Unpickles `data`. Throws ctfgen::Error (naming `source`, the offset and the opcode) on
/// malformed input, unsupported opcodes, limit violations and invalid tensor arguments
/// (negative sizes or strides, offsets or extents past the storage's declared numel, overflow).
Document parse(const uint8_t* data, size_t size, const std::string& source,
               const Limits& limits = {});

/// "FloatStorage" -> kFloat, ...; Undefined when unknown.
c10::ScalarType storage_dtype(const std::string& storage_class_name);

}  // namespace ctfgen::io::pickle
