/* hako's exec helper ("dmz"): execve(argv[1], &argv[2], envp).
 * The runtime runs it from a sealed memfd as the step before the container's
 * program, so /proc/self/exe at that moment is this sealed copy and never
 * hako-runc (CVE-2019-5736). Fewer than 3 arguments: exit 127. */
    .text
    .globl _start
_start:
    mov     (%rsp), %rdi            /* argc */
    cmp     $3, %rdi
    jb      fail
    lea     8(%rsp), %rsi           /* argv */
    lea     8(%rsi,%rdi,8), %rdx    /* envp = argv + argc + 1 */
    mov     8(%rsi), %rdi           /* path = argv[1] */
    add     $16, %rsi               /* new argv = &argv[2] */
    mov     $59, %eax               /* execve */
    syscall
fail:
    mov     $127, %edi
    mov     $60, %eax               /* exit */
    syscall
    .section .note.GNU-stack,"",@progbits
