/* hako's exec helper ("dmz"): execve(argv[1], &argv[2], envp); see x86_64.S. */
    .text
    .globl _start
_start:
    ldr     x0, [sp]                /* argc */
    cmp     x0, #3
    b.lo    fail
    add     x1, sp, #8              /* argv */
    add     x2, x1, x0, lsl #3
    add     x2, x2, #8              /* envp = argv + argc + 1 */
    ldr     x0, [x1, #8]            /* path = argv[1] */
    add     x1, x1, #16             /* new argv = &argv[2] */
    mov     x8, #221                /* execve */
    svc     #0
fail:
    mov     x0, #127
    mov     x8, #93                 /* exit */
    svc     #0
    .section .note.GNU-stack,"",@progbits
