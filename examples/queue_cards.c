/* The seed card-dealing Queue program. Python's original:
 *
 *   def dealer(q):
 *       for card in ['A', 'K', 'Q', 'J', '10']:
 *           q.put(card)
 *
 *   def player(q):
 *       while not q.empty():
 *           print(q.get())
 *
 *   q = Queue()
 *   d = Process(target=dealer, args=(q,))
 *   d.start(); d.join()
 *   p = Process(target=player, args=(q,))
 *   p.start(); p.join()
 *
 * (The dealer is joined before the player starts: the player stops at the
 * first moment it finds the queue empty.)
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int dealer(mp_args_t *args)
{
    static const char *const cards[] = {"A", "K", "Q", "J", "10"};
    mp_queue_t *q;
    if (mp_args_queue(args, 0, &q)) return 1;
    for (size_t i = 0; i < sizeof cards / sizeof *cards; i++)
        if (mp_queue_put(q, cards[i], strlen(cards[i]), MP_FOREVER)) return 1;
    return 0;
}

static int player(mp_args_t *args)
{
    mp_queue_t *q;
    if (mp_args_queue(args, 0, &q)) return 1;
    while (mp_queue_empty(q) == 0) {
        char card[8];
        size_t len;
        if (mp_queue_get_into(q, card, sizeof card - 1, &len, MP_FOREVER)) return 1;
        card[len] = 0;
        printf("%s\n", card);
    }
    return 0;
}

static int run(mp_target_fn target, mp_args_t *args)
{
    mp_process_opts_t opts = {.target = target, .args = args};
    mp_process_t *p = NULL;
    int code = -1;
    if (mp_process_create(&p, &opts) || mp_process_start(p)) {
        fprintf(stderr, "cannot start a process: %s\n", mp_last_error_detail());
        return 1;
    }
    mp_process_join(p, MP_FOREVER);
    mp_process_exitcode(p, &code);
    mp_process_free(p);
    return code;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_queue_t *q;
    if (mp_queue_create(&q, NULL)) {
        fprintf(stderr, "mp_queue_create: %s\n", mp_last_error_detail());
        return 1;
    }
    mp_args_t *args;
    mp_args_create(&args);
    mp_args_add_handle(args, MP_HANDLE(q));
    int failed = run(dealer, args) || run(player, args);
    mp_args_free(args);
    mp_queue_free(q);
    return failed;
}
