// A seccomp filter that refuses io_uring_setup, io_uring_enter and io_uring_register with EPERM, as Docker's default
// profile does, and allows every other call. Used by the no_io_uring launcher (tests/support/no_io_uring.cpp) and by
// the test binary itself for its epoll rerun (tests/support/catch_main.cpp, CORING_TEST_SECCOMP).
//
// The filter is classic BPF written by hand (no libseccomp): eleven instructions, and the tests then need nothing
// beyond the kernel. Like Docker's profile, it returns an error rather than killing the process, so a program can see
// the refusal and fall back; EPERM is the errno Docker's profile gives for calls it does not allow.
#pragma once

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <iterator>

namespace coring_test::seccomp {

// The architecture whose system call table the filter's numbers belong to. A system call made through another table
// (a 32-bit program, or int 0x80 from a 64-bit one) has the same number for a different call, so the filter first
// checks seccomp_data::arch. io_uring's three calls were added after the tables were unified (Linux 5.1): they are
// 425, 426 and 427 in every table, so the compatibility table is checked with the same numbers. x32 programs use the
// x86_64 table with bit 30 set in the number (__X32_SYSCALL_BIT): the filter masks it off, so they are refused too.
#if defined(__x86_64__)
constexpr std::uint32_t native_arch = AUDIT_ARCH_X86_64;
constexpr std::uint32_t compat_arch = AUDIT_ARCH_I386;
constexpr std::uint32_t syscall_number_mask = ~std::uint32_t{0x40000000}; // __X32_SYSCALL_BIT
#elif defined(__aarch64__)
constexpr std::uint32_t native_arch = AUDIT_ARCH_AARCH64;
constexpr std::uint32_t compat_arch = AUDIT_ARCH_ARM;
constexpr std::uint32_t syscall_number_mask = ~std::uint32_t{0};
#else
#error "no_io_uring: unknown architecture; add its AUDIT_ARCH_* value (<linux/audit.h>) and its compat one here"
#endif

static_assert(__NR_io_uring_setup == 425 && __NR_io_uring_enter == 426 && __NR_io_uring_register == 427,
              "io_uring's system call numbers are the same in every table (see native_arch)");

constexpr sock_filter statement(std::uint16_t code, std::uint32_t k) { return {code, 0, 0, k}; }
constexpr sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t if_true, std::uint8_t if_false) {
    return {code, if_true, if_false, k};
}

constexpr std::uint16_t load_word = BPF_LD | BPF_W | BPF_ABS; // A = the 32-bit word of seccomp_data at offset k
constexpr std::uint16_t jump_if_equal = BPF_JMP | BPF_JEQ | BPF_K;

// Jump offsets count the instructions skipped after the jump: 0 falls through to the next one.
constexpr sock_filter filter[] = {
    /* 0 */ statement(load_word, offsetof(seccomp_data, arch)),
    /* 1 */ jump(jump_if_equal, native_arch, 2, 0), // to 4
    /* 2 */ jump(jump_if_equal, compat_arch, 1, 0), // to 4
    // An architecture this filter does not know: its numbers could mean anything, so nothing is allowed (libseccomp's
    // default for a foreign architecture too). The process dies of SIGSYS ("Bad system call" in a shell).
    /* 3 */ statement(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    /* 4 */ statement(load_word, offsetof(seccomp_data, nr)),
    /* 5 */ statement(BPF_ALU | BPF_AND | BPF_K, syscall_number_mask),
    /* 6 */ jump(jump_if_equal, __NR_io_uring_setup, 3, 0),    // to 10
    /* 7 */ jump(jump_if_equal, __NR_io_uring_enter, 2, 0),    // to 10
    /* 8 */ jump(jump_if_equal, __NR_io_uring_register, 1, 0), // to 10
    /* 9 */ statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    // The low 16 bits of SECCOMP_RET_ERRNO's value are the errno the call returns.
    /* 10 */ statement(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
};

// Installs the filter in the calling thread; execve keeps it, and every process and thread started later inherits
// it. Returns false with errno set when the kernel refuses.
inline bool install_filter() {
    // Without CAP_SYS_ADMIN the kernel accepts a filter only from a process that gave up gaining privileges through
    // execve (a set-user-ID program could otherwise be run under a filter that makes it misbehave).
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    sock_fprog program{};
    program.len = static_cast<unsigned short>(std::size(filter));
    program.filter = const_cast<sock_filter*>(filter); // the kernel copies it and never writes to it
    // seccomp(2) first (Linux 3.17); prctl(PR_SET_SECCOMP) is the older spelling of the same thing.
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) == 0) return true;
    if (errno != ENOSYS) return false;
    return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) == 0;
}

} // namespace coring_test::seccomp
