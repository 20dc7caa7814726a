// Calls any ATen operator by name through the c10 dispatcher, for the `torch` feature's
// replay (src/replay/torch.rs). tch wraps a fixed list of ops with typed signatures; the
// dispatcher takes the op's schema and a boxed stack, so an op is found by its name and the
// call's recorded arguments are bound against each overload's schema, as Python's argument
// parser does. Nothing is converted loosely: an argument whose type does not fit leaves the
// overload, and a call no overload takes is an error, never a guess.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/function_schema.h>
#include <ATen/core/stack.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

extern "C" {

// Mirrors `AtenArg` in src/replay/torch.rs.
enum ds_kind : int32_t {
  DS_NONE = 0,
  DS_TENSOR = 1,
  DS_INT = 2,
  DS_FLOAT = 3,
  DS_BOOL = 4,
  DS_STR = 5,
  DS_INTS = 6,
  DS_FLOATS = 7,
  DS_BOOLS = 8,
  DS_TENSORS = 9,
};

struct ds_arg {
  const char* name;  // keyword, or null for a positional argument
  int32_t kind;
  int64_t i;
  double f;
  const char* s;
  const void* items;  // int64_t*, double*, uint8_t* or at::Tensor* const*
  size_t len;
  at::Tensor* tensor;
};
}

namespace {

using c10::IValue;
using c10::TypeKind;
using c10::TypePtr;

char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p != nullptr) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// "torch.float32" -> kDouble: the replay computes in float64, so a floating dtype argument
// (softmax's dtype=, .to(torch.float16)) names float64; integer and bool dtypes are kept.
std::optional<at::ScalarType> scalar_type(const std::string& s) {
  std::string n = s.rfind("torch.", 0) == 0 ? s.substr(6) : s;
  if (n == "float16" || n == "half" || n == "bfloat16" || n == "float32" || n == "float" ||
      n == "float64" || n == "double")
    return at::kDouble;
  if (n == "complex64" || n == "complex128" || n == "cfloat" || n == "cdouble")
    return at::kComplexDouble;
  if (n == "int64" || n == "long") return at::kLong;
  if (n == "int32" || n == "int") return at::kInt;
  if (n == "int16" || n == "short") return at::kShort;
  if (n == "int8") return at::kChar;
  if (n == "uint8") return at::kByte;
  if (n == "bool") return at::kBool;
  return std::nullopt;
}

std::optional<c10::MemoryFormat> memory_format(const std::string& s) {
  if (s == "torch.contiguous_format") return c10::MemoryFormat::Contiguous;
  if (s == "torch.preserve_format") return c10::MemoryFormat::Preserve;
  if (s == "torch.channels_last") return c10::MemoryFormat::ChannelsLast;
  if (s == "torch.channels_last_3d") return c10::MemoryFormat::ChannelsLast3d;
  return std::nullopt;
}

// "cpu", "cuda:0", "npu:3", ...: a device name, not a dtype or a mode string.
bool is_device(const std::string& s) {
  static const char* kinds[] = {"cpu", "cuda", "npu", "xpu", "mps", "hpu", "meta"};
  std::string k = s.substr(0, s.find(':'));
  if (std::find(std::begin(kinds), std::end(kinds), k) == std::end(kinds)) return false;
  if (k.size() == s.size()) return true;
  std::string n = s.substr(k.size() + 1);
  return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_int_kind(TypeKind k) { return k == TypeKind::IntType || k == TypeKind::SymIntType; }
bool is_float_kind(TypeKind k) { return k == TypeKind::FloatType || k == TypeKind::SymFloatType; }
bool is_bool_kind(TypeKind k) { return k == TypeKind::BoolType || k == TypeKind::SymBoolType; }

at::Tensor wrapped_number(const ds_arg& a) {
  at::Tensor t = a.kind == DS_INT
                     ? at::scalar_tensor(a.i, at::TensorOptions().dtype(at::kLong))
                     : at::scalar_tensor(a.f, at::TensorOptions().dtype(at::kDouble));
  t.unsafeGetTensorImpl()->set_wrapped_number(true);
  return t;
}

// The value `a` takes as an argument of schema type `t` (N: a fixed list length a single int
// broadcasts to), or nothing when it does not fit. `wrap` lets a number stand for a Tensor,
// as Python does for `torch.add(t, 2)` when no Scalar overload takes it.
std::optional<IValue> bind(const ds_arg& a, const TypePtr& t, std::optional<int32_t> n, bool wrap) {
  TypeKind k = t->kind();
  if (k == TypeKind::OptionalType) {
    if (a.kind == DS_NONE) return IValue();
    return bind(a, t->castRaw<c10::OptionalType>()->getElementType(), n, wrap);
  }
  if (a.kind == DS_NONE) return std::nullopt;
  switch (k) {
    case TypeKind::TensorType:
      if (a.kind == DS_TENSOR) return IValue(*a.tensor);
      if (wrap && (a.kind == DS_INT || a.kind == DS_FLOAT)) return IValue(wrapped_number(a));
      return std::nullopt;
    case TypeKind::NumberType:  // Scalar
      if (a.kind == DS_INT) return IValue(c10::Scalar(a.i));
      if (a.kind == DS_FLOAT) return IValue(c10::Scalar(a.f));
      // Not a bool: F.elu(x, 1.0, False) must not turn `inplace` into `scale`.
      return std::nullopt;
    case TypeKind::ScalarTypeType:
      if (a.kind == DS_STR) {
        if (auto st = scalar_type(a.s)) return IValue(*st);
      }
      return std::nullopt;
    case TypeKind::MemoryFormatType:
      if (a.kind == DS_STR) {
        if (auto mf = memory_format(a.s)) return IValue(*mf);
      }
      return std::nullopt;
    case TypeKind::LayoutType:
      if (a.kind == DS_STR && std::string(a.s) == "torch.strided") return IValue(at::kStrided);
      return std::nullopt;
    case TypeKind::DeviceObjType:
      // The replay runs on the CPU whatever device the call named.
      if (a.kind == DS_STR && is_device(a.s)) return IValue(c10::Device(c10::kCPU));
      return std::nullopt;
    case TypeKind::StringType:
      if (a.kind == DS_STR) return IValue(std::string(a.s));
      return std::nullopt;
    case TypeKind::ListType: {
      TypeKind e = t->castRaw<c10::ListType>()->getElementType()->kind();
      if (is_int_kind(e)) {
        if (a.kind == DS_INT && n) return IValue(std::vector<int64_t>(*n, a.i));
        if (a.kind != DS_INTS) return std::nullopt;
        auto p = static_cast<const int64_t*>(a.items);
        return IValue(std::vector<int64_t>(p, p + a.len));
      }
      if (is_float_kind(e)) {
        if (a.kind == DS_FLOATS) {
          auto p = static_cast<const double*>(a.items);
          return IValue(std::vector<double>(p, p + a.len));
        }
        if (a.kind == DS_INTS) {
          auto p = static_cast<const int64_t*>(a.items);
          return IValue(std::vector<double>(p, p + a.len));
        }
        return std::nullopt;
      }
      if (is_bool_kind(e) && a.kind == DS_BOOLS) {
        auto p = static_cast<const uint8_t*>(a.items);
        c10::List<bool> l;
        for (size_t j = 0; j < a.len; ++j) l.push_back(p[j] != 0);
        return IValue(l);
      }
      if (e == TypeKind::TensorType && (a.kind == DS_TENSORS || (a.kind == DS_INTS && a.len == 0))) {
        auto p = static_cast<at::Tensor* const*>(a.items);
        std::vector<at::Tensor> v;
        for (size_t j = 0; j < a.len; ++j) v.push_back(*p[j]);
        return IValue(v);
      }
      return std::nullopt;
    }
    default:
      if (is_int_kind(k) && a.kind == DS_INT) return IValue(a.i);
      if (is_float_kind(k) && (a.kind == DS_FLOAT || a.kind == DS_INT))
        return IValue(a.kind == DS_FLOAT ? a.f : static_cast<double>(a.i));
      if (is_bool_kind(k) && a.kind == DS_BOOL) return IValue(a.i != 0);
      return std::nullopt;
  }
}

bool same_name(const std::string& schema_name, const char* given) {
  // Python's argument parser accepts `input` for ATen's `self`.
  return schema_name == given || (schema_name == "self" && std::strcmp(given, "input") == 0);
}

// Binds the call to one schema; an empty optional (and `why`) when it does not fit.
std::optional<torch::jit::Stack> bind_schema(const c10::FunctionSchema& schema,
                                              const ds_arg* args, size_t nargs, bool wrap,
                                              std::string& why) {
  const auto& params = schema.arguments();
  std::vector<std::optional<IValue>> slots(params.size());
  // Python packs `x.view(2, 6)` and `torch.zeros(2, 3)` into the int list when that list is
  // the one positional parameter besides `self`.
  std::optional<size_t> varargs;
  {
    std::vector<size_t> positional;
    for (size_t q = 0; q < params.size(); ++q)
      if (!params[q].kwarg_only() && !(q == 0 && params[q].name() == "self")) positional.push_back(q);
    if (positional.size() == 1) {
      const auto& t = params[positional[0]].real_type();
      if (t->kind() == TypeKind::ListType &&
          is_int_kind(t->castRaw<c10::ListType>()->getElementType()->kind()))
        varargs = positional[0];
    }
  }
  size_t next = 0;
  for (size_t j = 0; j < nargs; ++j) {
    const ds_arg& a = args[j];
    size_t p = params.size();
    if (a.name == nullptr) {
      while (next < params.size() && params[next].kwarg_only()) ++next;
      p = next++;
      if (p >= params.size()) {
        why = "too many positional arguments";
        return std::nullopt;
      }
      if (varargs == p && a.kind == DS_INT && j + 1 < nargs && args[j + 1].name == nullptr) {
        std::vector<int64_t> packed;
        for (; j < nargs && args[j].name == nullptr && args[j].kind == DS_INT; ++j)
          packed.push_back(args[j].i);
        --j;
        slots[p] = IValue(packed);
        continue;
      }
    } else {
      for (size_t q = 0; q < params.size(); ++q)
        if (same_name(params[q].name(), a.name)) p = q;
      if (p == params.size()) {
        why = std::string("no argument named `") + a.name + "`";
        return std::nullopt;
      }
      if (slots[p]) {
        why = std::string("argument `") + a.name + "` given twice";
        return std::nullopt;
      }
    }
    auto v = bind(a, params[p].real_type(), params[p].N(), wrap);
    if (!v) {
      why = "argument `" + params[p].name() + "` does not take the recorded value";
      return std::nullopt;
    }
    slots[p] = std::move(v);
  }
  torch::jit::Stack stack;
  for (size_t p = 0; p < params.size(); ++p) {
    if (slots[p]) {
      stack.push_back(std::move(*slots[p]));
    } else if (params[p].default_value()) {
      stack.push_back(*params[p].default_value());
    } else {
      why = "argument `" + params[p].name() + "` is missing";
      return std::nullopt;
    }
  }
  return stack;
}

// Ops tagged random (dropout, attention with dropout) are deterministic when an argument
// switches the randomness off: probability 0 or not training.
bool draws_random(const c10::FunctionSchema& schema, const torch::jit::Stack& stack) {
  const auto& params = schema.arguments();
  for (size_t q = 0; q < params.size() && q < stack.size(); ++q) {
    const std::string& n = params[q].name();
    const IValue& v = stack[q];
    if ((n == "p" || n == "dropout_p") && v.isDouble() && v.toDouble() == 0.0) return false;
    if ((n == "train" || n == "training") && v.isBool() && !v.toBool()) return false;
  }
  return true;
}

bool writes_an_argument(const c10::FunctionSchema& schema) {
  for (const auto& p : schema.arguments())
    if (p.alias_info() && p.alias_info()->isWrite()) return true;
  return false;
}

std::optional<at::Tensor> first_tensor(const IValue& v) {
  if (v.isTensor()) return v.toTensor();
  if (v.isTensorList() && v.toTensorList().size() > 0) return v.toTensorList().get(0);
  if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements())
      if (auto t = first_tensor(e)) return t;
  }
  return std::nullopt;
}

std::string schema_text(const c10::FunctionSchema& s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

}  // namespace

extern "C" {

// Calls `aten::<name>` with `args`. Overloads are tried with `overload` first (when not null),
// then the default one, then the rest in registration order; first with strict types, then
// letting numbers stand for tensors. On success returns null, sets `*out` to a new tensor
// (the op's first tensor output; free it with tch) and `*schema` to the overload's schema
// (free with ds_aten_free). On failure returns the reason (free with ds_aten_free).
char* ds_aten_call(const char* name, const char* overload, const ds_arg* args, size_t nargs,
                   at::Tensor** out, char** schema) {
  *out = nullptr;
  *schema = nullptr;
  try {
    const std::string qualified = std::string("aten::") + name;
    std::vector<c10::OperatorHandle> ops;
    std::vector<std::string> order;
    if (overload != nullptr) order.emplace_back(overload);
    order.emplace_back("");
    for (const auto& on : c10::Dispatcher::singleton().getAllOpNames())
      if (on.name == qualified) order.push_back(on.overload_name);
    std::vector<std::string> seen;
    for (const auto& ov : order) {
      if (std::find(seen.begin(), seen.end(), ov) != seen.end()) continue;
      seen.push_back(ov);
      if (auto h = c10::Dispatcher::singleton().findSchema({qualified, ov})) ops.push_back(*h);
    }
    if (ops.empty()) return dup("no ATen operator named `" + qualified + "`");

    std::string reasons;
    for (bool wrap : {false, true}) {
      for (const auto& op : ops) {
        const auto& s = op.schema();
        if (writes_an_argument(s)) continue;  // in-place and out= overloads
        std::string why;
        auto stack = bind_schema(s, args, nargs, wrap, why);
        if (!stack) {
          if (!wrap) reasons += "\n  " + schema_text(s) + ": " + why;
          continue;
        }
        if (op.hasTag(at::Tag::nondeterministic_seeded) && draws_random(s, *stack))
          return dup("`" + qualified + "` draws random numbers here: its output cannot be recomputed");
        op.callBoxed(*stack);
        for (const auto& v : *stack) {
          if (auto t = first_tensor(v)) {
            *out = new at::Tensor(t->contiguous());
            *schema = dup(schema_text(s));
            return nullptr;
          }
        }
        return dup(schema_text(s) + " returned no tensor");
      }
    }
    return dup("no overload of `" + qualified + "` takes the recorded arguments:" + reasons);
  } catch (const c10::Error& e) {
    return dup(std::string("libtorch: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup(std::string("libtorch: ") + e.what());
  }
}

void ds_aten_free(char* p) { std::free(p); }
}
