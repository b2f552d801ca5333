// The restricted unpickler. Values are shared_ptrs because the memo and the stack share mutable
// dicts (a dict is memoised before SETITEMS fills it), exactly as Python objects are shared.
#include "io/torch_zip.h"

#include <cstring>
#include <functional>
#include <iomanip>
#include <memory>
#include <set>
#include <sstream>
#include <unordered_map>

#include "io/zip_reader.h"
#include "util/error.h"
#include "util/limits.h"

namespace hessgap::io {

namespace {

enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Tensor, Global, Storage };
enum class Callable { OrderedDict, RebuildTensor, RebuildParameter, StorageType };

struct Value;
using VP = std::shared_ptr<Value>;

struct Value {
  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Frees nested values with a work list instead of recursion: a pickle may nest (or, through the
  // memo and APPEND, chain) values deeper than the stack could follow.
  ~Value();

  Kind kind = Kind::None;
  int depth = 1;                          // containers: 1 + the deepest item when it was added
  bool b = false;
  std::int64_t i = 0;
  double f = 0;
  std::string s;                          // Str; Global: "module.name"; Tensor/Storage: storage key
  std::vector<VP> items;                  // Tuple, List
  std::vector<std::pair<VP, VP>> dict;    // Dict, insertion order
  torch::Tensor tensor;                   // Tensor (a view), Storage (1-D, whole storage)
  Callable callable = Callable::OrderedDict;
  torch::Dtype dtype = torch::kFloat;     // Global StorageType
};

Value::~Value() {
  std::vector<VP> pending;
  auto take_children = [&pending](Value& v) {
    for (VP& x : v.items) pending.push_back(std::move(x));
    for (auto& [k, x] : v.dict) {
      pending.push_back(std::move(k));
      pending.push_back(std::move(x));
    }
    v.items.clear();
    v.dict.clear();
  };
  take_children(*this);
  while (!pending.empty()) {
    VP v = std::move(pending.back());
    pending.pop_back();
    // The last owner empties the value before it dies, so its own destructor has nothing to follow.
    if (v && v.use_count() == 1) take_children(*v);
  }
}

VP make(Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Tensor: return "tensor";
    case Kind::Global: return "class or function";
    case Kind::Storage: return "storage";
  }
  return "?";
}

const std::map<std::string, torch::Dtype>& storage_types() {
  static const std::map<std::string, torch::Dtype> kTypes = {
      {"DoubleStorage", torch::kDouble}, {"FloatStorage", torch::kFloat}, {"HalfStorage", torch::kHalf},
      {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kLong}, {"IntStorage", torch::kInt},
      {"ShortStorage", torch::kShort}, {"CharStorage", torch::kChar}, {"ByteStorage", torch::kByte},
      {"BoolStorage", torch::kBool}};
  return kTypes;
}

class Unpickler {
 public:
  using PersistentLoad = std::function<VP(const Value& pid)>;

  Unpickler(const std::string& data, std::string where, PersistentLoad load)
      : d_(data), where_(std::move(where)), load_(std::move(load)) {}

  VP run() {
    while (true) {
      HG_CHECK(pos_ < d_.size(), where_ << ": the pickle ends without STOP (truncated?)");
      op_pos_ = pos_;
      op_ = static_cast<unsigned char>(d_[pos_++]);
      if (op_ == '.') break;  // STOP
      step();
    }
    if (stack_.size() != 1) fail("the pickle leaves " + std::to_string(stack_.size()) + " values, expected 1");
    return stack_.back();
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    std::ostringstream os;
    os << where_ << ", byte " << op_pos_ << ", opcode 0x" << std::hex << std::setw(2) << std::setfill('0')
       << static_cast<int>(op_);
    if (op_ >= 0x20 && op_ < 0x7f) os << " '" << static_cast<char>(op_) << "'";
    os << ": " << msg;
    throw Error(os.str());
  }

  const unsigned char* take(std::size_t n) {
    if (n > d_.size() - pos_) fail("the pickle ends inside an opcode (truncated?)");
    const auto* p = reinterpret_cast<const unsigned char*>(d_.data() + pos_);
    pos_ += n;
    return p;
  }
  std::uint64_t uint_le(std::size_t n) {
    const unsigned char* p = take(n);
    std::uint64_t v = 0;
    for (std::size_t k = n; k-- > 0;) v = (v << 8) | p[k];
    return v;
  }
  std::string line() {
    const std::size_t end = d_.find('\n', pos_);
    if (end == std::string::npos) fail("unterminated GLOBAL name");
    std::string s = d_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  VP pop() {
    if (stack_.size() <= base()) fail("malformed pickle: the stack is empty");
    VP v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  VP& top() {
    if (stack_.size() <= base()) fail("malformed pickle: the stack is empty");
    return stack_.back();
  }
  // Values above the innermost MARK may be popped; below it only through POP_MARK & co.
  std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<VP> pop_mark() {
    if (marks_.empty()) fail("malformed pickle: no MARK");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<VP> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  // Every value pushed or put into a container counts against kMaxValues: a pickle of repeated
  // one-byte opcodes (DUP, NONE, APPEND) compresses a thousandfold, and each one costs a pointer or a
  // value here, so the count, not the file's size, is what bounds memory (10^7: about 1.5 GB at most;
  // a state dict needs about 50 per tensor).
  static constexpr std::int64_t kMaxValues = 10'000'000;
  void count_value() {
    if (++values_ > kMaxValues) {
      fail("the pickle builds more than " + std::to_string(kMaxValues) + " values (a state dict needs about 50 per tensor)");
    }
  }
  void push(VP v) {
    count_value();
    stack_.push_back(std::move(v));
  }
  void push_int(std::int64_t i) {
    VP v = make(Kind::Int);
    v->i = i;
    push(v);
  }
  void push_str(std::string s) {
    VP v = make(Kind::Str);
    v->s = std::move(s);
    push(v);
  }
  // Containers record how deep they nest when an item goes in; deeper than kMaxDepth is refused
  // (real state dicts nest a few levels). Nothing here recurses over values, and freeing them does
  // not either (~Value), so a container deepened later through the memo cannot overflow the stack.
  static constexpr int kMaxDepth = 1000;
  void adopt(Value& container, const VP& item) {
    count_value();
    if (item->depth + 1 > container.depth) container.depth = item->depth + 1;
    if (container.depth > kMaxDepth) {
      fail("the pickle nests values more than " + std::to_string(kMaxDepth) + " levels deep (a state dict needs a few)");
    }
  }
  VP tuple(std::vector<VP> items) {
    VP v = make(Kind::Tuple);
    for (const VP& x : items) adopt(*v, x);
    v->items = std::move(items);
    return v;
  }
  // A new memo entry counts as a value too: 10^8 MEMOIZEs of one dict are 97 kB zipped.
  void memo_put(std::uint64_t idx) {
    VP& v = top();
    auto it = memo_.find(idx);
    if (it != memo_.end()) {
      it->second = v;
      return;
    }
    count_value();
    memo_.emplace(idx, v);
  }
  void memo_get(std::uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo key " + std::to_string(idx) + " was never stored");
    push(it->second);
  }
  void set_items(VP& dict, const std::vector<VP>& kv) {
    if (dict->kind != Kind::Dict) fail(std::string("SETITEM(S) on a ") + kind_name(dict->kind) + ", not a dict");
    if (kv.size() % 2) fail("SETITEMS with an odd number of values");
    for (std::size_t k = 0; k < kv.size(); k += 2) {
      adopt(*dict, kv[k]);
      adopt(*dict, kv[k + 1]);
      dict->dict.emplace_back(kv[k], kv[k + 1]);
    }
  }

  VP global(const std::string& module, const std::string& name) {
    VP v = make(Kind::Global);
    v->s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      v->callable = Callable::OrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      v->callable = Callable::RebuildTensor;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      v->callable = Callable::RebuildParameter;
    } else if (module == "torch" && storage_types().count(name)) {
      v->callable = Callable::StorageType;
      v->dtype = storage_types().at(name);
    } else {
      fail("refusing to load '" + v->s +
           "': only state dicts of tensors are read (collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
           "torch._utils._rebuild_parameter, torch.<T>Storage), and nothing in the file is ever executed");
    }
    return v;
  }

  static std::string ints_text(const std::vector<std::int64_t>& v) {
    std::string s = "(";
    for (std::size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
    return s + (v.size() == 1 ? ",)" : ")");
  }

  std::vector<std::int64_t> ints(const VP& v, const char* what) {
    if (v->kind != Kind::Tuple) fail(std::string("_rebuild_tensor_v2: ") + what + " is not a tuple");
    std::vector<std::int64_t> out;
    for (const VP& x : v->items) {
      if (x->kind != Kind::Int || x->i < 0) fail(std::string("_rebuild_tensor_v2: ") + what + " must hold integers >= 0");
      out.push_back(x->i);
    }
    return out;
  }

  VP reduce(const VP& fn, const VP& args) {
    if (fn->kind != Kind::Global) fail(std::string("REDUCE on a ") + kind_name(fn->kind));
    if (args->kind != Kind::Tuple) fail("REDUCE arguments are not a tuple");
    const auto& a = args->items;
    switch (fn->callable) {
      case Callable::OrderedDict: {
        if (!a.empty()) fail("collections.OrderedDict called with arguments");
        return make(Kind::Dict);
      }
      case Callable::RebuildParameter: {
        if (a.size() != 3 || a[0]->kind != Kind::Tensor) fail("_rebuild_parameter expects (tensor, requires_grad, hooks)");
        return a[0];
      }
      case Callable::RebuildTensor: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if ((a.size() != 6 && a.size() != 7) || a[0]->kind != Kind::Storage || a[1]->kind != Kind::Int) {
          fail("_rebuild_tensor_v2 expects (storage, offset, size, stride, requires_grad, hooks[, metadata])");
        }
        const torch::Tensor& storage = a[0]->tensor;
        const std::int64_t offset = a[1]->i;
        const auto size = ints(a[2], "size"), stride = ints(a[3], "stride");
        if (size.size() != stride.size()) fail("_rebuild_tensor_v2: size and stride differ in length");
        // Overflow-safe: size and stride come from the file. A view never shows more elements than
        // its storage holds (expanded tensors such as BERT's position_ids [1,512] of 512 included),
        // so copying it allocates no more than the file's bytes.
        const auto numel = checked_numel(size);
        if (!numel || *numel > storage.numel()) {
          fail("tensor view of size " + ints_text(size) + " has more elements than its storage of " +
               std::to_string(storage.numel()));
        }
        std::int64_t last = offset;
        bool overflow = false;
        for (std::size_t k = 0; k < size.size() && *numel > 0; ++k) {
          std::int64_t step = 0;
          overflow = overflow || __builtin_mul_overflow(size[k] - 1, stride[k], &step) ||
                     __builtin_add_overflow(last, step, &last);
        }
        const bool inside = offset >= 0 && !overflow && (*numel == 0 ? offset <= storage.numel() : last < storage.numel());
        if (!inside) {
          fail("tensor view (offset " + std::to_string(offset) + ", size " + ints_text(size) + ", stride " +
               ints_text(stride) + ") reaches " + (overflow ? "beyond int64" : "element " + std::to_string(last)) +
               " of a storage of " + std::to_string(storage.numel()));
        }
        VP v = make(Kind::Tensor);
        v->tensor = storage.as_strided(size, stride, offset);
        v->s = a[0]->s;
        return v;
      }
      case Callable::StorageType: break;
    }
    fail("'" + fn->s + "' cannot be called");
  }

  void step() {
    switch (op_) {
      case 0x80: {  // PROTO
        const auto proto = uint_le(1);
        if (proto < 2 || proto > 5) fail("pickle protocol " + std::to_string(proto) + " (2 to 5 are read)");
        break;
      }
      case 0x95: take(8); break;  // FRAME: a framing hint only
      case '(': count_value(), marks_.push_back(stack_.size()); break;  // MARK (counted: 10^9 of them are 1 MB zipped)
      case '0': pop(); break;                             // POP
      case '1': pop_mark(); break;                        // POP_MARK
      case '2': push(top()); break;                       // DUP
      case 'N': push(make(Kind::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        VP v = make(Kind::Bool);
        v->b = op_ == 0x88;
        push(v);
        break;
      }
      case 'J': push_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(uint_le(4)))); break;  // BININT
      case 'K': push_int(static_cast<std::int64_t>(uint_le(1))); break;                              // BININT1
      case 'M': push_int(static_cast<std::int64_t>(uint_le(2))); break;                              // BININT2
      case 0x8a: {  // LONG1: n little-endian two's-complement bytes
        const std::size_t n = uint_le(1);
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes is too large");
        std::uint64_t u = n ? uint_le(n) : 0;
        if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~std::uint64_t{0} << (8 * n);
        push_int(static_cast<std::int64_t>(u));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const unsigned char* p = take(8);
        std::uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | p[k];
        VP v = make(Kind::Float);
        std::memcpy(&v->f, &u, 8);
        push(v);
        break;
      }
      case 'X': {  // BINUNICODE
        const std::size_t n = uint_le(4);
        push_str(std::string(reinterpret_cast<const char*>(take(n)), n));
        break;
      }
      case 0x8c: {  // SHORT_BINUNICODE
        const std::size_t n = uint_le(1);
        push_str(std::string(reinterpret_cast<const char*>(take(n)), n));
        break;
      }
      case 0x8d: {  // BINUNICODE8
        const std::uint64_t n = uint_le(8);
        if (n > d_.size()) fail("string longer than the pickle");
        push_str(std::string(reinterpret_cast<const char*>(take(n)), n));
        break;
      }
      case '}': push(make(Kind::Dict)); break;   // EMPTY_DICT
      case ']': push(make(Kind::List)); break;   // EMPTY_LIST
      case ')': push(tuple({})); break;          // EMPTY_TUPLE
      case 't': push(tuple(pop_mark())); break;  // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<VP> items(op_ - 0x84);
        for (std::size_t k = items.size(); k-- > 0;) items[k] = pop();
        push(tuple(std::move(items)));
        break;
      }
      case 'l': {  // LIST
        VP v = make(Kind::List);
        v->items = pop_mark();
        for (const VP& x : v->items) adopt(*v, x);
        push(v);
        break;
      }
      case 'd': {  // DICT
        VP v = make(Kind::Dict);
        set_items(v, pop_mark());
        push(v);
        break;
      }
      case 'a': {  // APPEND
        VP x = pop();
        VP& list = top();
        if (list->kind != Kind::List) fail(std::string("APPEND to a ") + kind_name(list->kind));
        adopt(*list, x);
        list->items.push_back(x);
        break;
      }
      case 'e': {  // APPENDS
        std::vector<VP> xs = pop_mark();
        VP& list = top();
        if (list->kind != Kind::List) fail(std::string("APPENDS to a ") + kind_name(list->kind));
        for (const VP& x : xs) adopt(*list, x);
        list->items.insert(list->items.end(), xs.begin(), xs.end());
        break;
      }
      case 's': {  // SETITEM
        VP value = pop();
        VP key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<VP> kv = pop_mark();
        set_items(top(), kv);
        break;
      }
      case 'b': {  // BUILD: only an OrderedDict's state (state_dict()._metadata), which is dropped
        pop();
        if (top()->kind != Kind::Dict) fail(std::string("BUILD on a ") + kind_name(top()->kind));
        break;
      }
      case 'q': memo_put(uint_le(1)); break;            // BINPUT
      case 'r': memo_put(uint_le(4)); break;            // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;         // MEMOIZE
      case 'h': memo_get(uint_le(1)); break;            // BINGET
      case 'j': memo_get(uint_le(4)); break;            // LONG_BINGET
      case 'c': {                                       // GLOBAL "module\nname\n"
        const std::string module = line();
        const std::string name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        VP name = pop();
        VP module = pop();
        if (module->kind != Kind::Str || name->kind != Kind::Str) fail("STACK_GLOBAL needs two strings");
        push(global(module->s, name->s));
        break;
      }
      case 'R': {  // REDUCE
        VP args = pop();
        VP fn = pop();
        push(reduce(fn, args));
        break;
      }
      case 'Q': push(load_(*pop())); break;  // BINPERSID
      default:
        fail("opcode not allowed in a state dict (only plain data, tensors and storages are read; nothing is executed)");
    }
  }

  const std::string& d_;
  std::string where_;
  PersistentLoad load_;
  std::size_t pos_ = 0, op_pos_ = 0;
  unsigned char op_ = 0;
  std::vector<VP> stack_;
  std::int64_t values_ = 0;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, VP> memo_;
};

bool is_tensor_dict(const Value& v) {
  if (v.kind != Kind::Dict) return false;
  for (const auto& [k, x] : v.dict) {
    if (k->kind != Kind::Str || x->kind != Kind::Tensor) return false;
  }
  return true;
}

std::string scalar_text(const Value& v) {
  std::ostringstream os;
  switch (v.kind) {
    case Kind::Str: return v.s;
    case Kind::Int: return std::to_string(v.i);
    case Kind::Bool: return v.b ? "True" : "False";
    case Kind::Float: os << std::setprecision(17) << v.f; return os.str();
    default: return "";
  }
}

}  // namespace

NamedTensors read_torch_zip(const std::string& path, std::map<std::string, std::string>* metadata) {
  ZipReader zip(path);
  std::string prefix;
  bool torchscript = false;
  for (const auto& e : zip.entries()) {
    const auto slash = e.name.find('/');
    if (slash == std::string::npos) continue;
    const std::string rest = e.name.substr(slash + 1);
    if (rest == "data.pkl") {
      HG_CHECK(prefix.empty(), "torch.save file '" << path << "' holds more than one data.pkl");
      prefix = e.name.substr(0, slash + 1);
    }
    torchscript = torchscript || rest == "constants.pkl" || rest.rfind("code/", 0) == 0;
  }
  HG_CHECK(!torchscript, "'" << path << "' is a TorchScript archive (torch.jit.save): save the model's "
                             "state_dict() with torch.save instead");
  HG_CHECK(!prefix.empty(), "zip archive '" << path << "' is not a torch.save file (no <name>/data.pkl entry)");
  if (const auto* bo = zip.find(prefix + "byteorder")) {
    const std::string order = zip.read(*bo);
    HG_CHECK(order == "little", "torch.save file '" << path << "' has byte order '" << order
                                                    << "'; only little-endian files are read");
  }

  std::map<std::string, VP> storages;
  auto load_storage = [&](const Value& pid) -> VP {
    const auto& t = pid.items;
    HG_CHECK(pid.kind == Kind::Tuple && t.size() == 5 && t[0]->kind == Kind::Str && t[0]->s == "storage" &&
                 t[1]->kind == Kind::Global && t[1]->callable == Callable::StorageType && t[2]->kind == Kind::Str &&
                 t[4]->kind == Kind::Int && t[4]->i >= 0,
             "torch.save file '" << path << "': persistent id is not ('storage', torch.<T>Storage, key, location, numel)");
    const std::string& key = t[2]->s;
    auto it = storages.find(key);
    if (it != storages.end()) {
      HG_CHECK(it->second->tensor.scalar_type() == t[1]->dtype && it->second->tensor.numel() == t[4]->i,
               "torch.save file '" << path << "': storage '" << key << "' is used with two types or sizes");
      return it->second;
    }
    const std::string record = prefix + "data/" + key;
    const ZipReader::Entry* e = zip.find(record);
    HG_CHECK(e != nullptr, "torch.save file '" << path << "' lacks the storage record '" << record << "'");
    // The declared numel is checked against the record's size (itself checked against the archive
    // by ZipReader) before anything is allocated.
    const auto nbytes = checked_nbytes({t[4]->i}, c10::elementSize(t[1]->dtype));
    HG_CHECK(nbytes && e->size == static_cast<std::uint64_t>(*nbytes),
             "torch.save file '" << path << "': storage record '" << record << "' holds " << e->size << " bytes, but "
                                 << t[4]->i << " elements of " << t[1]->s << " need "
                                 << (nbytes ? std::to_string(*nbytes) : std::string("more than 2^63")));
    VP v = make(Kind::Storage);
    v->s = key;
    v->tensor = torch::empty({t[4]->i}, torch::TensorOptions().dtype(t[1]->dtype));
    if (*nbytes > 0) zip.read_into(*e, v->tensor.data_ptr(), static_cast<std::uint64_t>(*nbytes));
    storages.emplace(key, v);
    return v;
  };

  const ZipReader::Entry* pkl = zip.find(prefix + "data.pkl");
  const std::string where = "torch.save file '" + path + "' (" + pkl->name + ")";
  // A state dict's pickle is kilobytes (the tensors are separate records); bounded before reading.
  constexpr std::uint64_t kMaxPickleBytes = std::uint64_t{1} << 30;
  HG_CHECK(pkl->size <= kMaxPickleBytes, where << " is " << pkl->size << " bytes, more than the limit of "
                                                << kMaxPickleBytes << " for a pickle");
  const std::string data = zip.read(*pkl);
  VP root = Unpickler(data, where, load_storage).run();

  // A training checkpoint keeps its state dict under one of these keys; any other dict is taken
  // as the state dict itself (and each of its values must then be a tensor).
  HG_CHECK(root->kind == Kind::Dict, "torch.save file '" << path << "' does not hold a state dict: the saved object is a "
                                                         << kind_name(root->kind) << ", not a dict of tensors");
  const Value* sd = root.get();
  std::map<std::string, std::string> meta;
  if (!is_tensor_dict(*root)) {
    for (const char* key : {"state_dict", "model_state_dict", "model"}) {
      for (const auto& [k, v] : root->dict) {
        if (sd == root.get() && k->kind == Kind::Str && k->s == key && v->kind == Kind::Dict) sd = v.get();
      }
    }
    if (sd != root.get()) {
      for (const auto& [k, v] : root->dict) {
        if (k->kind == Kind::Str && (v->kind == Kind::Str || v->kind == Kind::Int || v->kind == Kind::Float ||
                                     v->kind == Kind::Bool)) {
          meta[k->s] = scalar_text(*v);
        }
      }
    }
  }

  // A view that is exactly its whole storage, used by no other tensor, can be returned as is;
  // every other view is copied so that the returned tensors are contiguous and independent.
  std::map<std::string, int> uses;
  for (const auto& [k, v] : sd->dict) {
    HG_CHECK(k->kind == Kind::Str, "torch.save file '" << path << "': the state dict has a " << kind_name(k->kind)
                                                       << " key (tensor names must be strings)");
    HG_CHECK(v->kind == Kind::Tensor, "torch.save file '" << path << "': state dict entry '" << k->s << "' is a "
                                                          << kind_name(v->kind) << ", not a tensor");
    ++uses[v->s];
  }
  NamedTensors out;
  std::set<std::string> names;
  for (const auto& [k, v] : sd->dict) {
    HG_CHECK(names.insert(k->s).second, "torch.save file '" << path << "' holds tensor '" << k->s << "' twice");
    const torch::Tensor& storage = storages.at(v->s)->tensor;
    torch::Tensor t = v->tensor;
    const bool whole = uses[v->s] == 1 && t.is_contiguous() && t.storage_offset() == 0 && t.numel() == storage.numel();
    out.emplace_back(k->s, whole ? t : t.clone(at::MemoryFormat::Contiguous));
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

}  // namespace hessgap::io
