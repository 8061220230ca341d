#include "io/pickle_reader.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "core/error.h"

namespace ctfgen::io::pickle {

namespace {
// The one opaque class whose BUILD state is kept (as data): LlamaGen's saved training "args".
const char* const kNamespaceName = "argparse.Namespace";
constexpr size_t kMaxNamespaceStates = 8;  // kept BUILD states per Namespace
}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Object: return "object";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

c10::ScalarType storage_dtype(const std::string& name) {
  static const std::unordered_map<std::string, c10::ScalarType> table = {
      {"FloatStorage", c10::kFloat},   {"HalfStorage", c10::kHalf},
      {"BFloat16Storage", c10::kBFloat16}, {"DoubleStorage", c10::kDouble},
      {"LongStorage", c10::kLong},     {"IntStorage", c10::kInt},
      {"ShortStorage", c10::kShort},   {"CharStorage", c10::kChar},
      {"ByteStorage", c10::kByte},     {"BoolStorage", c10::kBool},
  };
  auto it = table.find(name);
  return it == table.end() ? c10::ScalarType::Undefined : it->second;
}

const Value* Document::dict_get(const Value& dict, const std::string& key) const {
  if (dict.kind != Kind::Dict) return nullptr;
  const Value* found = nullptr;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const Value& k = values[dict.items[i]];
    if (k.kind == Kind::Str && k.s == key) found = &values[dict.items[i + 1]];
  }
  return found;
}

std::vector<std::pair<std::string, Ref>> Document::namespace_fields(const Value& ns) const {
  std::vector<std::pair<std::string, Ref>> out;
  if (ns.kind != Kind::Object || ns.s != kNamespaceName) return out;
  std::unordered_map<std::string, size_t> index;
  for (Ref state : ns.items) {
    const Value& d = values.at(state);
    if (d.kind != Kind::Dict) continue;
    for (size_t i = 0; i + 1 < d.items.size(); i += 2) {
      const Value& k = values.at(d.items[i]);
      if (k.kind != Kind::Str) continue;
      auto [it, fresh] = index.emplace(k.s, out.size());
      if (fresh) out.emplace_back(k.s, d.items[i + 1]);
      else out[it->second].second = d.items[i + 1];
    }
  }
  return out;
}

std::string Document::describe(Ref r) const {
  const Value& v = values.at(r);
  switch (v.kind) {
    case Kind::Tensor: {
      std::string s = "tensor [";
      for (size_t i = 0; i < v.sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(v.sizes[i]);
      return s + "] " + c10::toString(values.at(v.storage).dtype);
    }
    case Kind::Global: return "global " + v.s;
    case Kind::Object: return "object " + v.s;
    case Kind::Str: return "str '" + v.s.substr(0, 40) + "'";
    case Kind::Int: return "int " + std::to_string(v.i);
    case Kind::Tuple:
    case Kind::List:
    case Kind::Dict:
      return str_cat(kind_name(v.kind), " of ", v.kind == Kind::Dict ? v.items.size() / 2 : v.items.size(),
                     " items");
    default: return kind_name(v.kind);
  }
}

namespace {

const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

class Parser {
 public:
  Parser(const uint8_t* data, size_t size, const std::string& source, const Limits& limits)
      : d_(data), n_(size), src_(source), lim_(limits) {}

  Document run() {
    if (n_ > lim_.max_input_bytes)
      throw Error(str_cat(src_, ": pickle of ", n_, " bytes exceeds the limit of ",
                          lim_.max_input_bytes));
    while (true) {
      op_pos_ = pos_;
      op_ = u8();
      if (op_ == '.') {
        doc_.root = pop();
        return std::move(doc_);
      }
      step();
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    const char* name = opcode_name(op_);
    throw Error(str_cat(src_, ": pickle byte ", op_pos_, " (opcode ",
                        name ? name : str_cat("0x", std::hex, int(op_)), "): ", args...));
  }

  // ---- input ----
  void need(uint64_t k) {
    if (k > n_ - pos_)
      fail("needs ", k, " more bytes but only ", n_ - pos_, " remain (truncated pickle)");
  }
  uint8_t u8() {
    if (pos_ >= n_) {
      op_pos_ = pos_;
      throw Error(str_cat(src_, ": pickle ends at byte ", pos_, " without a STOP opcode (truncated)"));
    }
    return d_[pos_++];
  }
  uint64_t uint_le(int bytes) {
    need(bytes);
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(d_[pos_ + i]) << (8 * i);
    pos_ += bytes;
    return v;
  }
  std::string bytes(uint64_t k) {
    need(k);
    std::string s(reinterpret_cast<const char*>(d_ + pos_), k);
    pos_ += k;
    return s;
  }
  std::string line() {
    size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') {
      if (pos_ - start > 4096) fail("text argument longer than 4096 bytes");
      ++pos_;
    }
    if (pos_ >= n_) fail("text argument without a terminating newline (truncated pickle)");
    std::string s(reinterpret_cast<const char*>(d_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  // ---- values and stack ----
  Ref add(Value v) {
    if (doc_.values.size() >= lim_.max_values) fail("more than ", lim_.max_values, " values");
    doc_.values.push_back(std::move(v));
    return static_cast<Ref>(doc_.values.size() - 1);
  }
  Ref add_kind(Kind k) {
    Value v;
    v.kind = k;
    return add(std::move(v));
  }
  Value& val(Ref r) { return doc_.values[r]; }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Ref r) {
    if (stack_.size() >= lim_.max_stack) fail("stack exceeds ", lim_.max_stack, " entries");
    stack_.push_back(r);
  }
  Ref pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    Ref r = stack_.back();
    stack_.pop_back();
    return r;
  }
  Ref top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void add_child(Ref container, Ref child) {
    Value& c = val(container);
    int d = val(child).depth + 1;
    if (d > lim_.max_depth) fail("containers nested deeper than ", lim_.max_depth, " levels");
    c.depth = std::max(c.depth, d);
    c.items.push_back(child);
  }
  Ref make_seq(Kind k, const std::vector<Ref>& items) {
    Ref r = add_kind(k);
    for (Ref i : items) add_child(r, i);
    return r;
  }
  Ref make_opaque(const std::string& name) {
    Value v;
    v.kind = Kind::Object;
    v.s = name;
    if (std::find(doc_.opaque_names.begin(), doc_.opaque_names.end(), name) ==
            doc_.opaque_names.end() &&
        doc_.opaque_names.size() < 1000)
      doc_.opaque_names.push_back(name);
    return add(std::move(v));
  }
  void memo_put(uint64_t idx) {
    Ref r = top();
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx))
      fail("memo exceeds ", lim_.max_memo, " entries");
    memo_[idx] = r;
  }
  void memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo key ", idx, " was never stored");
    push(it->second);
  }

  void set_items(Ref target, const std::vector<Ref>& kv) {
    if (kv.size() % 2) fail("odd number of items for a dict");
    Kind k = val(target).kind;
    if (k == Kind::Object) return;  // an opaque object's contents are dropped
    if (k != Kind::Dict) fail("SETITEM(S) applied to a ", kind_name(k), ", not a dict");
    for (Ref r : kv) add_child(target, r);
  }
  void append_items(Ref target, const std::vector<Ref>& items) {
    Kind k = val(target).kind;
    if (k == Kind::Object) return;
    if (k != Kind::List) fail("APPEND(S) applied to a ", kind_name(k), ", not a list");
    for (Ref r : items) add_child(target, r);
  }

  int64_t as_int(Ref r, const char* what) {
    const Value& v = val(r);
    if (v.kind == Kind::Int) return v.i;
    if (v.kind == Kind::Bool) return v.b;
    fail(what, " must be an int, got ", doc_.describe(r));
  }
  std::vector<int64_t> as_int_tuple(Ref r, const char* what) {
    const Value& v = val(r);
    if (v.kind != Kind::Tuple && v.kind != Kind::List)
      fail(what, " must be a tuple of ints, got ", doc_.describe(r));
    if (v.items.size() > static_cast<size_t>(lim_.max_tensor_dims))
      fail(what, " has ", v.items.size(), " dimensions (limit ", lim_.max_tensor_dims, ")");
    std::vector<int64_t> out;
    for (Ref i : std::vector<Ref>(v.items)) out.push_back(as_int(i, what));
    return out;
  }

  // ('storage', torch.<T>Storage, key, location, numel)
  Ref persistent_load(Ref pid) {
    const Value& t = val(pid);
    if (t.kind != Kind::Tuple || t.items.size() != 5)
      fail("persistent id must be a 5-tuple ('storage', type, key, location, numel), got ",
           doc_.describe(pid));
    std::vector<Ref> it = t.items;
    if (val(it[0]).kind != Kind::Str || val(it[0]).s != "storage")
      fail("persistent id of an unknown kind (", doc_.describe(it[0]), "); only 'storage' is read");
    if (val(it[1]).kind != Kind::Global) fail("storage type must be a class, got ", doc_.describe(it[1]));
    const std::string type = val(it[1]).s;
    c10::ScalarType dt = c10::ScalarType::Undefined;
    if (type.rfind("torch.", 0) == 0) dt = storage_dtype(type.substr(6));
    if (dt == c10::ScalarType::Undefined)
      fail("unsupported storage type ", type,
           " (supported: torch.Float/Half/BFloat16/Double/Long/Int/Short/Char/Byte/BoolStorage)");
    if (val(it[2]).kind != Kind::Str) fail("storage key must be a str, got ", doc_.describe(it[2]));
    if (val(it[3]).kind != Kind::Str) fail("storage location must be a str, got ", doc_.describe(it[3]));
    int64_t numel = as_int(it[4], "storage numel");
    if (numel < 0) fail("storage '", val(it[2]).s, "' declares a negative numel ", numel);
    Value s;
    s.kind = Kind::Storage;
    s.s = val(it[2]).s;
    s.location = val(it[3]).s;
    s.dtype = dt;
    s.numel = numel;
    return add(std::move(s));
  }

  // torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
  //                                 backward_hooks[, metadata])
  Ref rebuild_tensor(const std::vector<Ref>& args) {
    if (args.size() < 4 || args.size() > 7)
      fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.size());
    if (val(args[0]).kind != Kind::Storage)
      fail("_rebuild_tensor_v2: first argument must be a storage, got ", doc_.describe(args[0]));
    const Value& st = val(args[0]);
    Value t;
    t.kind = Kind::Tensor;
    t.storage = args[0];
    t.storage_offset = as_int(args[1], "storage offset");
    t.sizes = as_int_tuple(args[2], "tensor size");
    t.strides = as_int_tuple(args[3], "tensor stride");
    if (t.sizes.size() != t.strides.size())
      fail("tensor size has ", t.sizes.size(), " dimensions but stride has ", t.strides.size());
    if (t.storage_offset < 0) fail("negative storage offset ", t.storage_offset);
    // numel and the furthest element offset, with overflow checks.
    int64_t numel = 1, extent = 0;
    for (size_t i = 0; i < t.sizes.size(); ++i) {
      if (t.sizes[i] < 0) fail("negative tensor size ", t.sizes[i], " in dimension ", i);
      if (t.strides[i] < 0) fail("negative tensor stride ", t.strides[i], " in dimension ", i);
      if (__builtin_mul_overflow(numel, t.sizes[i], &numel)) fail("tensor element count overflows");
    }
    if (numel > 0) {
      for (size_t i = 0; i < t.sizes.size(); ++i) {
        int64_t span;
        if (__builtin_mul_overflow(t.sizes[i] - 1, t.strides[i], &span) ||
            __builtin_add_overflow(extent, span, &extent))
          fail("tensor extent overflows");
      }
      int64_t last;
      if (__builtin_add_overflow(t.storage_offset, extent, &last) || last >= st.numel)
        fail("tensor of size ", str_cat_sizes(t.sizes), " at storage offset ", t.storage_offset,
             " reaches element ", t.storage_offset, "+", extent, " past the end of storage '",
             st.s, "' (", st.numel, " elements)");
    } else if (t.storage_offset > st.numel) {
      fail("storage offset ", t.storage_offset, " past the end of storage '", st.s, "' (",
           st.numel, " elements)");
    }
    return add(std::move(t));
  }
  static std::string str_cat_sizes(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  Ref reduce(Ref callable, Ref args_ref) {
    const Value& a = val(args_ref);
    if (a.kind != Kind::Tuple) fail("REDUCE arguments must be a tuple, got ", doc_.describe(args_ref));
    std::vector<Ref> args = a.items;
    if (val(callable).kind != Kind::Global) return make_opaque("call of " + doc_.describe(callable));
    const std::string name = val(callable).s;
    if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args);
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty() || val(args[0]).kind != Kind::Tensor)
        fail(name, ": first argument must be a tensor");
      return args[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2" && args.size() >= 3 &&
        val(args[0]).kind == Kind::Global && val(args[1]).kind == Kind::Global &&
        (val(args[1]).s == "torch.Tensor" || val(args[1]).s == "torch.nn.parameter.Parameter") &&
        val(args[2]).kind == Kind::Tuple)
      return reduce(args[0], args[2]);
    if (name == "collections.OrderedDict" && args.empty()) return add_kind(Kind::Dict);
    return make_opaque(name);
  }

  void step() {
    switch (op_) {
      case 0x80: {
        uint64_t proto = uint_le(1);
        if (proto > 5) fail("pickle protocol ", proto, " is newer than 5");
        break;
      }
      case 0x95: {  // FRAME: a length prefix for the next opcodes; nothing to do but check it
        uint64_t len = uint_le(8);
        if (len > n_ - pos_) fail("frame of ", len, " bytes runs past the end of the pickle");
        break;
      }
      case '(':
        if (marks_.size() >= lim_.max_marks) fail("more than ", lim_.max_marks, " open MARKs");
        marks_.push_back(stack_.size());
        break;
      case '0':
        if (stack_.size() > floor()) stack_.pop_back();
        else pop_mark();
        break;
      case '1': pop_mark(); break;
      case '2': push(top()); break;
      case 'N': push(add_kind(Kind::None)); break;
      case 0x88:
      case 0x89: {
        Value v;
        v.kind = Kind::Bool;
        v.b = op_ == 0x88;
        push(add(std::move(v)));
        break;
      }
      case 'J':
      case 'K':
      case 'M': {
        int nb = op_ == 'J' ? 4 : op_ == 'K' ? 1 : 2;
        uint64_t raw = uint_le(nb);
        Value v;
        v.kind = Kind::Int;
        v.i = op_ == 'J' ? static_cast<int64_t>(static_cast<int32_t>(raw)) : static_cast<int64_t>(raw);
        push(add(std::move(v)));
        break;
      }
      case 0x8a:
      case 0x8b: {
        uint64_t nb = op_ == 0x8a ? uint_le(1) : uint_le(4);
        if (op_ == 0x8b && (nb & 0x80000000u)) fail("negative LONG4 length");
        need(nb);
        if (nb > 8) {
          pos_ += nb;
          push(make_opaque("int (more than 64 bits)"));
          break;
        }
        uint64_t raw = 0;
        for (uint64_t i = 0; i < nb; ++i) raw |= static_cast<uint64_t>(d_[pos_ + i]) << (8 * i);
        if (nb > 0 && nb < 8 && (d_[pos_ + nb - 1] & 0x80)) raw |= ~0ull << (8 * nb);  // sign-extend
        pos_ += nb;
        Value v;
        v.kind = Kind::Int;
        v.i = static_cast<int64_t>(raw);
        push(add(std::move(v)));
        break;
      }
      case 'G': {
        need(8);
        uint64_t raw = 0;
        for (int i = 0; i < 8; ++i) raw = (raw << 8) | d_[pos_ + i];  // big-endian
        pos_ += 8;
        Value v;
        v.kind = Kind::Float;
        std::memcpy(&v.f, &raw, 8);
        push(add(std::move(v)));
        break;
      }
      case 'X':
      case 0x8c:
      case 0x8d:
      case 'T':
      case 'U':
      case 'B':
      case 'C':
      case 0x8e: {
        uint64_t len;
        if (op_ == 0x8c || op_ == 'U' || op_ == 'C') len = uint_le(1);
        else if (op_ == 0x8d || op_ == 0x8e) len = uint_le(8);
        else len = uint_le(4);
        if (op_ == 'T' && (len & 0x80000000u)) fail("negative BINSTRING length");
        Value v;
        v.kind = (op_ == 'B' || op_ == 'C' || op_ == 0x8e) ? Kind::Bytes : Kind::Str;
        v.s = bytes(len);
        push(add(std::move(v)));
        break;
      }
      case ')': push(add_kind(Kind::Tuple)); break;
      case 't': push(make_seq(Kind::Tuple, pop_mark())); break;
      case 0x85:
      case 0x86:
      case 0x87: {
        size_t k = op_ - 0x84;
        std::vector<Ref> items(k);
        for (size_t i = k; i-- > 0;) items[i] = pop();
        push(make_seq(Kind::Tuple, items));
        break;
      }
      case ']': push(add_kind(Kind::List)); break;
      case 'l': push(make_seq(Kind::List, pop_mark())); break;
      case 'a': {
        Ref item = pop();
        append_items(top(), {item});
        break;
      }
      case 'e': {
        std::vector<Ref> items = pop_mark();
        append_items(top(), items);
        break;
      }
      case '}': push(add_kind(Kind::Dict)); break;
      case 'd': {
        std::vector<Ref> kv = pop_mark();
        Ref dict = add_kind(Kind::Dict);
        set_items(dict, kv);
        push(dict);
        break;
      }
      case 's': {
        Ref v = pop();
        Ref k = pop();
        set_items(top(), {k, v});
        break;
      }
      case 'u': {
        std::vector<Ref> kv = pop_mark();
        set_items(top(), kv);
        break;
      }
      case 0x8f: push(make_opaque("builtins.set")); break;
      case 0x91:
        pop_mark();
        push(make_opaque("builtins.frozenset"));
        break;
      case 0x90: {
        pop_mark();
        if (val(top()).kind != Kind::Object) fail("ADDITEMS applied to a ", kind_name(val(top()).kind));
        break;
      }
      case 'c': {
        std::string module = line();
        std::string name = line();
        Value v;
        v.kind = Kind::Global;
        v.s = module + "." + name;
        push(add(std::move(v)));
        break;
      }
      case 0x93: {
        Ref name = pop();
        Ref module = pop();
        if (val(name).kind != Kind::Str || val(module).kind != Kind::Str)
          fail("STACK_GLOBAL needs two strings");
        Value v;
        v.kind = Kind::Global;
        v.s = val(module).s + "." + val(name).s;
        push(add(std::move(v)));
        break;
      }
      case 'q': memo_put(uint_le(1)); break;
      case 'r': memo_put(uint_le(4)); break;
      case 0x94: memo_put(memo_.size()); break;
      case 'h': memo_get(uint_le(1)); break;
      case 'j': memo_get(uint_le(4)); break;
      case 'Q': {
        Ref pid = pop();
        push(persistent_load(pid));
        break;
      }
      case 'R': {
        Ref args = pop();
        Ref callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {
        pop();  // args
        Ref cls = pop();
        push(make_opaque(val(cls).kind == Kind::Global ? val(cls).s : "instance of " + doc_.describe(cls)));
        break;
      }
      case 0x92: {
        pop();  // kwargs
        pop();  // args
        Ref cls = pop();
        push(make_opaque(val(cls).kind == Kind::Global ? val(cls).s : "instance of " + doc_.describe(cls)));
        break;
      }
      case 'b': {
        // The state is never applied: no attribute of anything is ever set. An
        // argparse.Namespace keeps a Dict state as inert data (see the header); every other
        // state is dropped.
        Ref state = pop();
        Ref target = top();
        if (val(target).kind == Kind::Object && val(target).s == kNamespaceName &&
            val(state).kind == Kind::Dict) {
          // Python writes one BUILD per object; a cap keeps namespace_fields linear when a
          // crafted file BUILDs the same large dict over and over.
          if (val(target).items.size() >= kMaxNamespaceStates)
            fail("more than ", kMaxNamespaceStates, " BUILD states for one ", kNamespaceName);
          add_child(target, state);
        }
        break;
      }
      default: {
        const char* name = opcode_name(op_);
        if (name)
          fail("opcode not supported by this restricted reader (torch.save does not write it)");
        fail("unknown opcode (not a pickle, or corrupt)");
      }
    }
  }

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& src_;
  Limits lim_;
  uint8_t op_ = 0;
  size_t op_pos_ = 0;
  Document doc_;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Ref> memo_;
};

}  // namespace

Document parse(const uint8_t* data, size_t size, const std::string& source, const Limits& limits) {
  return Parser(data, size, source, limits).run();
}

}  // namespace ctfgen::io::pickle
