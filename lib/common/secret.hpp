// coapgw::secret — storage for keys (PSKs, traffic keys, serialized session state) that is wiped
// with OPENSSL_cleanse whenever it is let go: on destruction, when a buffer is reallocated, and
// when it is moved from (a move hands the one heap buffer over, no copy is left behind).
//
// SecretBytes keeps its bytes on the heap only, through WipingAllocator, so a move hands the one
// buffer over; SecretString is a std::string that wipes itself. Code that must hand a key to an
// API taking a plain std::string or a raw buffer wipes its own copy with secure_wipe.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace coapgw {

// OPENSSL_cleanse: a wipe the compiler may not drop as a dead store.
void secure_wipe(void* data, std::size_t size);
inline void secure_wipe(std::string& s) {
  secure_wipe(s.data(), s.capacity());  // also the bytes past size() a shorter value left behind
  s.clear();
}
template <class T, class A>
void secure_wipe(std::vector<T, A>& v) {
  secure_wipe(v.data(), v.capacity() * sizeof(T));
  v.clear();
}

// An allocator that wipes every block before handing it back to Upstream (std::allocator; tests
// put a recording one there).
template <class T, class Upstream = std::allocator<T>>
struct WipingAllocator {
  using value_type = T;
  using upstream_type = typename std::allocator_traits<Upstream>::template rebind_alloc<T>;
  WipingAllocator() noexcept = default;
  template <class U, class V>
  WipingAllocator(const WipingAllocator<U, V>&) noexcept {}  // NOLINT: rebinding
  template <class U>
  struct rebind {
    using other = WipingAllocator<U, Upstream>;
  };
  T* allocate(std::size_t n) { return upstream_type().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    secure_wipe(p, n * sizeof(T));
    upstream_type().deallocate(p, n);
  }
  template <class U, class V>
  bool operator==(const WipingAllocator<U, V>&) const noexcept { return true; }
};

using SecretBytes = std::vector<std::byte, WipingAllocator<std::byte>>;

// A key as a std::string (PSKs are byte strings that config gives as text or hex), so code that
// takes std::string keeps working, that wipes its buffer on destruction, before every assignment
// and after being moved from (a move out of a short string copies it and leaves the bytes behind
// in the small-string buffer). Growing one in place reallocates without a wipe: build keys at
// their final size. Never delete one through a std::string pointer.
class SecretString : public std::string {
 public:
  using std::string::string;
  SecretString() = default;
  SecretString(const std::string& s) : std::string(s) {}  // NOLINT: implicit, like the string it is
  SecretString(std::string&& s) noexcept : std::string(std::move(s)) { secure_wipe(s); }  // NOLINT
  SecretString(std::string_view s) : std::string(s) {}  // NOLINT
  SecretString(const SecretString& o) : std::string(o) {}
  SecretString(SecretString&& o) noexcept : std::string(std::move(static_cast<std::string&>(o))) { o.wipe(); }
  SecretString& operator=(const SecretString& o) {
    if (this != &o) assign_wiped(o);
    return *this;
  }
  SecretString& operator=(SecretString&& o) noexcept {
    if (this != &o) {
      wipe();
      std::string::operator=(std::move(static_cast<std::string&>(o)));
      o.wipe();
    }
    return *this;
  }
  SecretString& operator=(const std::string& o) {
    assign_wiped(o);
    return *this;
  }
  SecretString& operator=(std::string&& o) noexcept {
    wipe();
    std::string::operator=(std::move(o));
    secure_wipe(o);
    return *this;
  }
  SecretString& operator=(std::string_view o) {
    assign_wiped(o);
    return *this;
  }
  SecretString& operator=(const char* o) {
    assign_wiped(o);
    return *this;
  }
  ~SecretString() { wipe(); }

  std::string_view view() const { return *this; }
  void wipe() noexcept { secure_wipe(static_cast<std::string&>(*this)); }

 private:
  void assign_wiped(std::string_view o) {
    std::string copy_guard;  // `o` may alias this string
    if (o.data() >= data() && o.data() < data() + capacity()) {
      copy_guard.assign(o);
      o = copy_guard;
    }
    wipe();
    std::string::assign(o);
    secure_wipe(copy_guard);
  }
};

}  // namespace coapgw
