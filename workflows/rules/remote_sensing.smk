# Remote-sensing rules: each calls one `rs <stage>`.


def rs_metrics_files():
    return []
