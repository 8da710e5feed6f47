#pragma once

#include <utility>

namespace coring::detail {

template <class Owner>
class fd_op_list;

/// The part of an operation in flight on a descriptor (a socket's accept or receive, a file's read) that lets its
/// owner's close() stop it without closing the descriptor under it. Shared by coring::file, the listeners and
/// udp_socket.
///
/// Closing a descriptor ends nothing the kernel holds on it (pitfalls B-7), and closing it under an operation is
/// worse than useless: the operation's SQE is prepared when it is awaited but reaches the kernel only at the loop's
/// next io_uring_enter (and a worker thread may be about to make its system call), so by then the number may name
/// whatever took it in between: a socket(), open() or accept() in the same turn, or an earlier OPENAT or ACCEPT in
/// the same batch (B-6). A datagram would leave through another socket, an accept would take another listener's
/// client.
///
/// So an owner lists the operations it has in flight (enter() when one goes to the kernel or the pool, with fd_ set
/// to the descriptor it runs on; leave() when its awaiter resumes) and, when it closes with any in flight, hands the
/// descriptor over to them (fd_op_list::hand_over): each is orphaned (owner() is null from then on) and stopped (a
/// cancellation; its own completion still ends it, B-1), and the last of them to end closes the descriptor, with
/// `static void Owner::close_handed_fd(int) noexcept` (which fd_op must be able to call). The orphans stay linked
/// among themselves, so the owner may be destroyed meanwhile. Loop thread only.
template <class Owner>
class fd_op {
public:
    /// Ends the operation early (a cancellation; its own completion still ends it). `former` is the owner that
    /// closes, still whole. Called at most once, by hand_over(); it must not unlist the operation.
    using stop_fn = void (*)(fd_op*, Owner* former) noexcept;

    fd_op(Owner* owner, stop_fn stop) noexcept : owner_(owner), stop_(stop) {}
    /// A copy (a move before awaiting) is not in flight.
    fd_op(const fd_op& o) noexcept : fd_(o.fd_), owner_(o.owner_), stop_(o.stop_) {}
    fd_op& operator=(const fd_op&) = delete;
    ~fd_op() { leave(); }

    /// The owner; null once it was closed or destroyed under the operation (then orphaned() is true).
    [[nodiscard]] Owner* owner() const noexcept { return owner_; }
    /// Whether the owner was closed under the operation.
    [[nodiscard]] bool orphaned() const noexcept { return orphaned_; }
    /// Lists the operation on `ops`, its owner's list, while the kernel (or a worker) has it. fd_ must be set.
    void enter(fd_op_list<Owner>& ops) noexcept { ops.push(this); }
    /// Unlists it (idempotent): it has ended. The last of an owner's orphans closes the descriptor.
    void leave() noexcept {
        if (!next_) return;
        const bool alone = next_ == this;
        if (!alone) {
            prev_->next_ = next_;
            next_->prev_ = prev_;
        }
        if (list_ && list_->head_ == this) list_->head_ = alone ? nullptr : next_;
        prev_ = next_ = nullptr;
        list_ = nullptr;
        if (orphaned_ && alone) Owner::close_handed_fd(fd_);
    }

protected:
    int fd_ = -1; // the descriptor the operation runs on, set before it starts (never read from the owner after)

private:
    friend class fd_op_list<Owner>;

    Owner* owner_;
    stop_fn stop_;
    fd_op_list<Owner>* list_ = nullptr; // the owner's list, while listed there (null once orphaned)
    fd_op* prev_ = nullptr;             // a circular list; next_ is null when not listed
    fd_op* next_ = nullptr;
    bool orphaned_ = false;
};

/// An owner's operations in flight (see fd_op). Moves with its owner (take), whose address it hands to them.
template <class Owner>
class fd_op_list {
public:
    fd_op_list() noexcept = default;
    fd_op_list(const fd_op_list&) = delete;
    fd_op_list& operator=(const fd_op_list&) = delete;

    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

    /// Takes over `o`'s operations (the owner moved to `owner`); this list must be empty.
    void take(fd_op_list& o, Owner* owner) noexcept {
        head_ = std::exchange(o.head_, nullptr);
        if (!head_) return;
        fd_op<Owner>* op = head_;
        do {
            op->list_ = this;
            op->owner_ = owner;
            op = op->next_;
        } while (op != head_);
    }

    /// The owner closes: orphans and stops every operation in flight. True when there was any: they now own the
    /// descriptor, and the last of them to end closes it; the caller must let go of it without closing it. False
    /// when there was none: the caller closes it.
    [[nodiscard]] bool hand_over(Owner* former) noexcept {
        fd_op<Owner>* const head = std::exchange(head_, nullptr);
        if (!head) return false;
        fd_op<Owner>* op = head;
        do {
            op->list_ = nullptr;
            op->owner_ = nullptr;
            op->orphaned_ = true;
            op = op->next_;
        } while (op != head);
        // Stopping never unlists (an operation leaves when its awaiter resumes), so the walk is safe.
        do {
            op->stop_(op, former);
            op = op->next_;
        } while (op != head);
        return true;
    }

private:
    friend class fd_op<Owner>;

    void push(fd_op<Owner>* op) noexcept {
        op->list_ = this;
        if (!head_) {
            op->prev_ = op->next_ = op;
            head_ = op;
            return;
        }
        op->next_ = head_;
        op->prev_ = head_->prev_;
        head_->prev_->next_ = op;
        head_->prev_ = op;
    }

    fd_op<Owner>* head_ = nullptr;
};

} // namespace coring::detail
