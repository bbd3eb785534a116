"""The code examples of LANGUAGE.md, verbatim, as plain string constants.

Shared by the front-end tests (tests/test_parser.py, tests/test_language_examples.py, tests/test_frontend_fuzz.py).
They are copied rather than read from LANGUAGE.md because a user's clone has no /work/shared; keep them identical
to the document's code blocks (tests/test_parser.py parses every code block of the document where it is present).
"""

# §4: blocks (an inception block and a residual one; Down with declared shapes)
BLOCKS = """\
block Inception(c1, c3r, c3, c5r, c5, pool_proj)(x) {
    a = x -> conv(c1, kernel=1) -> relu
    b = x -> conv(c3r, kernel=1) -> relu -> conv(c3, kernel=3, pad=same) -> relu
    c = x -> conv(c5r, kernel=1) -> relu -> conv(c5, kernel=5, pad=same) -> relu
    d = x -> maxpool(3, stride=1, pad=same) -> conv(pool_proj, kernel=1) -> relu
    return concat(a, b, c, d)                 # on the channel axis
}

block Basic(channels, stride=1)(x) {
    y = x -> conv(channels, kernel=3, stride=stride, pad=1, bias=false) -> batchnorm -> relu
          -> conv(channels, kernel=3, pad=1, bias=false) -> batchnorm
    skip = if stride == 1 and x.shape[0] == channels then x
           else x -> conv(channels, kernel=1, stride=stride, bias=false) -> batchnorm
    return relu(y + skip)
}
"""

DOWN = """\
block Down(c)(x: [C, H, W]) -> [c, H / 2, W / 2] {
    return x -> conv(c, kernel=3, stride=2, pad=1) -> relu
}
"""

# §5: cells
CELLS = """\
cell RNN(hidden)(x, h: [hidden]) {            # h_t = tanh(W_hh h_{t-1} + W_xh x_t)
    h = tanh(x -> wx: dense(hidden) + h -> wh: dense(hidden, bias=false))
    return h, h                               # (output at t, new state)
}

cell LSTM(hidden)(x, h: [hidden], c: [hidden]) {
    z = concat(h, x)
    f = sigmoid(z -> f: dense(hidden))        # forget gate
    i = sigmoid(z -> i: dense(hidden))        # input gate
    o = sigmoid(z -> o: dense(hidden))        # output gate
    g = tanh(z -> g: dense(hidden))           # candidate memory
    c = f * c + i * g
    h = o * tanh(c)
    return h, (h, c)
}
"""

# §6: a network
LENET = """\
network LeNet5(classes=10) {
    input image: [1, 32, 32]
    input label: int[]
    logits = image
        -> c1: conv(6, kernel=5) -> tanh -> s2: avgpool(2)
        -> c3: conv(16, kernel=5) -> tanh -> s4: avgpool(2)    : [16, 5, 5]
        -> flatten
        -> f5: dense(120) -> tanh
        -> f6: dense(84) -> tanh
        -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
"""

# §7: a training recipe for LeNet5
RECIPE = """\
train LeNet5 {
    data       digits(size=32)                       # fields bind to the inputs in declaration order
    optimizer  sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)
    schedule   step(every=10, gamma=0.1)             # lr ÷ 10 every 10 epochs
    batch      64
    epochs     20
}
"""

# §9: how an error is printed
ERROR_EXAMPLE = """\
lenet.net:5:12: error: conv 'c3' does not tile its input: (7 - 3) / 3 + 1 = 2.33 is not a whole number
    -> c3: conv(16, kernel=3, stride=3)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  hint: use stride 1 or 2, or pad=1
"""

# the spec examples (all but the error rendering), in the document's order
EXAMPLES = [BLOCKS, DOWN, CELLS, LENET, RECIPE]
